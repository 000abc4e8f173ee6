"""Golden fixtures for the BYOL-A audio encoder (AudioNTT2020 layout).

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/audio_cnn.py
Needs, in that venv: torch 2.11.0, safetensors.

The module below reproduces the layout of BYOL-A's encoder (Niizumi et al.,
https://arxiv.org/abs/2103.06695; `AudioNTT2020Task6` in its repository):
three blocks of Conv2d(3x3, pad 1) -> BatchNorm2d -> ReLU -> MaxPool2d(2),
then per frame a Linear -> ReLU -> Dropout(0.3) -> Linear -> ReLU on the
flattened channels x bands, then max over time plus mean over time.
It is written here from the paper's description, with nn.Sequential
indices giving the state-dict keys (`features.0.weight`, `fc.3.bias`, ...).

BYOL-A v2's AudioNTT2022 (https://arxiv.org/abs/2204.07402; `AudioNTT2022`
in its repository's v2 folder) differs in two ways, both written here from
the paper: two convolution blocks instead of three, and each frame's
flattened convolutional features concatenated before its MLP output, ahead
of the same max + mean pooling.

Writes crates/ssl-audio/tests/fixtures/audio_cnn.safetensors: the weights
(BatchNorm running statistics set to non-trivial values), `input`
[2, 1, 32, 24] and `output` [2, 48] in eval mode, for n_mels 32, 16
channels, width 48; and audio_cnn_v2.safetensors, the same for the v2
layout (two blocks, stacked: `output` [2, 16 * 8 + 48] = [2, 176]).
"""

import pathlib

import torch
from safetensors.torch import save_file
from torch import nn

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "crates/ssl-audio/tests/fixtures"


class AudioCnn(nn.Module):
    def __init__(self, n_mels=32, channels=16, d=48, blocks=3, stack=False):
        super().__init__()
        layers = []
        c_in = 1
        for _ in range(blocks):
            layers += [nn.Conv2d(c_in, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2, 2)]
            c_in = channels
        self.features = nn.Sequential(*layers)
        conv_d = channels * (n_mels // 2**blocks)
        self.fc = nn.Sequential(nn.Linear(conv_d, d), nn.ReLU(), nn.Dropout(0.3), nn.Linear(d, d), nn.ReLU())
        self.stack = stack

    def forward(self, x):  # [B, 1, F, T]
        x = self.features(x)  # [B, C, F/2^blocks, T/2^blocks]
        x = x.permute(0, 3, 2, 1)  # [B, T, F, C]
        b, t, f, c = x.shape
        x = x.reshape(b, t, f * c)
        h = self.fc(x)  # [B, T, D]
        if self.stack:
            h = torch.cat([x, h], dim=2)  # [B, T, F*C + D]
        return h.max(dim=1).values + h.mean(dim=1)


def write(m, name):
    with torch.no_grad():
        for key, t in m.named_buffers():
            if "running_mean" in key:
                t.copy_(torch.randn(t.shape) * 0.1)
            elif "running_var" in key:
                t.copy_(torch.rand(t.shape) + 0.5)
        for key, p in m.named_parameters():
            if key.startswith("features.") and key.endswith("weight") and p.dim() == 1:
                p.copy_(torch.rand(p.shape) + 0.5)
    m.eval()
    x = torch.randn(2, 1, 32, 24)
    y = m(x)
    tensors = {k: v.contiguous() for k, v in m.state_dict().items()}
    tensors["input"] = x
    tensors["output"] = y.detach()
    out = FIXTURES / name
    save_file(tensors, str(out))
    print(out, tuple(y.shape), sorted(k for k in tensors if k.startswith("fc")))


def main():
    torch.manual_seed(0)
    write(AudioCnn(), "audio_cnn.safetensors")
    torch.manual_seed(1)
    write(AudioCnn(blocks=2, stack=True), "audio_cnn_v2.safetensors")


if __name__ == "__main__":
    main()

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

Writes crates/ssl-audio/tests/fixtures/audio_cnn.safetensors: the weights
(BatchNorm running statistics set to non-trivial values), `input`
[2, 1, 32, 24] and `output` [2, 48] in eval mode, for n_mels 32, 16
channels, width 48.
"""

import pathlib

import torch
from safetensors.torch import save_file
from torch import nn

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/ssl-audio/tests/fixtures/audio_cnn.safetensors"


class AudioCnn(nn.Module):
    def __init__(self, n_mels=32, channels=16, d=48):
        super().__init__()
        layers = []
        c_in = 1
        for _ in range(3):
            layers += [nn.Conv2d(c_in, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2, 2)]
            c_in = channels
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(channels * (n_mels // 8), d), nn.ReLU(), nn.Dropout(0.3), nn.Linear(d, d), nn.ReLU())

    def forward(self, x):  # [B, 1, F, T]
        x = self.features(x)  # [B, C, F/8, T/8]
        x = x.permute(0, 3, 2, 1)  # [B, T, F, C]
        b, t, f, c = x.shape
        x = self.fc(x.reshape(b, t, f * c))  # [B, T, D]
        return x.max(dim=1).values + x.mean(dim=1)


def main():
    torch.manual_seed(0)
    m = AudioCnn()
    with torch.no_grad():
        for name, t in m.named_buffers():
            if "running_mean" in name:
                t.copy_(torch.randn(t.shape) * 0.1)
            elif "running_var" in name:
                t.copy_(torch.rand(t.shape) + 0.5)
        for name, p in m.named_parameters():
            if "1.weight" in name or "5.weight" in name or "9.weight" in name:
                p.copy_(torch.rand(p.shape) + 0.5)
    m.eval()
    x = torch.randn(2, 1, 32, 24)
    y = m(x)
    tensors = {k: v.contiguous() for k, v in m.state_dict().items()}
    tensors["input"] = x
    tensors["output"] = y.detach()
    save_file(tensors, str(OUT))
    print(OUT, tuple(y.shape), sorted(k for k in tensors if k.startswith("fc")))


if __name__ == "__main__":
    main()

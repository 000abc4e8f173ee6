"""Golden fixtures for the log-mel front end, from torchaudio.

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/logmel.py
Needs, in that venv: torch 2.11.0, torchaudio 2.11.0, safetensors.

Writes crates/ssl-audio/tests/fixtures/logmel.safetensors with
  wave    [2, 8000] f32: a 440→3000 Hz chirp plus a 1 kHz tone burst and
          seeded noise, and a second clip of seeded noise with a 250 Hz tone;
  fbank   [201, 64] f32: torchaudio.functional.melscale_fbanks(201, 0, 8000,
          64, 16000, norm=None, mel_scale="htk");
  mel     [2, 64, 51] f32: torchaudio.transforms.MelSpectrogram(
          sample_rate=16000, n_fft=400, hop_length=160, n_mels=64) (Hann
          window, centre=True with reflect padding, power 2, HTK scale,
          no filter normalisation) of wave;
  logmel  [2, 64, 51] f32: log(mel + 1e-6).
"""

import math
import pathlib

import torch
import torchaudio
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/ssl-audio/tests/fixtures/logmel.safetensors"


def main():
    g = torch.Generator().manual_seed(0)
    sr, n = 16000, 8000
    t = torch.arange(n, dtype=torch.float64) / sr
    chirp = torch.sin(2 * math.pi * (440 * t + (3000 - 440) / (2 * t[-1]) * t**2))
    burst = torch.sin(2 * math.pi * 1000 * t) * ((t > 0.2) & (t < 0.3))
    a = 0.5 * chirp + 0.3 * burst + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
    b = 0.2 * torch.randn(n, generator=g, dtype=torch.float64) + 0.4 * torch.sin(2 * math.pi * 250 * t)
    wave = torch.stack([a, b]).float()
    mel_t = torchaudio.transforms.MelSpectrogram(sample_rate=sr, n_fft=400, hop_length=160, n_mels=64)
    mel = mel_t(wave)
    fbank = torchaudio.functional.melscale_fbanks(201, 0.0, sr / 2, 64, sr, norm=None, mel_scale="htk")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file({"wave": wave.contiguous(), "fbank": fbank.contiguous(), "mel": mel.contiguous(),
               "logmel": torch.log(mel + 1e-6).contiguous()}, str(OUT))
    print(OUT, tuple(mel.shape), float(mel.max()))


if __name__ == "__main__":
    main()

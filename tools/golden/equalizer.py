"""Reference for the random equaliser's filter: torchaudio's peaking biquad.

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/equalizer.py
Needs, in that venv: torch 2.11.0, torchaudio 2.11.0, safetensors.

Writes crates/ssl-audio/tests/fixtures/equalizer.safetensors, read by
crates/ssl-audio/tests/equalizer.rs:
  wave   [8000] f32: 0.5 s at 16 kHz, tones at 200, 1000 and 3000 Hz plus
         seeded white noise, peak below 0.3 (so that torchaudio's default
         clamp to [-1, 1] never acts);
  bands  [4, 3] f32: (centre Hz, gain dB, Q) of four peaking filters;
  eq_K   [8000] f32 for K in 0..4: torchaudio.functional.equalizer_biquad(
         wave, 16000, centre, gain, Q) for band K alone, in float64;
  cascade [8000] f32: the four filters one after the other.
"""

import math
import pathlib

import torch
import torchaudio.functional as F
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/ssl-audio/tests/fixtures/equalizer.safetensors"
BANDS = [(250.0, 9.0, 0.7), (1000.0, -12.0, 2.0), (3100.0, 6.5, 4.0), (5500.0, -3.0, 0.5)]


def main():
    sr, n = 16000, 8000
    t = torch.arange(n, dtype=torch.float64) / sr
    gen = torch.Generator().manual_seed(0)
    wave = (0.1 * torch.sin(2 * math.pi * 200 * t) + 0.08 * torch.sin(2 * math.pi * 1000 * t + 0.5)
            + 0.05 * torch.sin(2 * math.pi * 3000 * t + 1.0)
            + 0.02 * torch.randn(n, generator=gen, dtype=torch.float64))
    wave = wave.float().double()  # the Rust side reads the f32 wave
    out = {"wave": wave.float(), "bands": torch.tensor(BANDS, dtype=torch.float32)}
    y = wave
    for k, (f, g, q) in enumerate(BANDS):
        out[f"eq_{k}"] = F.equalizer_biquad(wave, sr, f, g, q).float()
        y = F.equalizer_biquad(y, sr, f, g, q)
        assert out[f"eq_{k}"].abs().max() < 1.0 and y.abs().max() < 1.0, "the clamp would act"
    out["cascade"] = y.float()
    save_file(out, str(OUT))
    print(OUT, float(y.abs().max()))


if __name__ == "__main__":
    main()

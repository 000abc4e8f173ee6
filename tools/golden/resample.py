"""Reference for the resampler test: torchaudio's band-limited resampling.

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/resample.py
Needs, in that venv: torch 2.11.0, torchaudio 2.11.0, safetensors.

Writes crates/ssl-audio/tests/fixtures/resample.safetensors:
  wave44k  [22050] f32: 0.5 s at 44.1 kHz of tones at 300, 1000 and 3500 Hz;
  wave16k  [8000]  f32: torchaudio.functional.resample(wave44k, 44100, 16000)
           with lowpass_filter_width=64, rolloff=0.99 and the Kaiser window
           (beta 14.77), a high-quality setting, librosa's "kaiser_best";
  alias44k [22050] f32: a 12 kHz tone (above the 8 kHz Nyquist of 16 kHz),
           which a band-limited resampler must remove.
The Rust resampler (rubato's FFT resampler) must match wave16k away from the
edges and suppress alias44k.
"""

import math
import pathlib

import torch
import torchaudio
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/ssl-audio/tests/fixtures/resample.safetensors"


def main():
    sr, n = 44100, 22050
    t = torch.arange(n, dtype=torch.float64) / sr
    wave = (0.4 * torch.sin(2 * math.pi * 300 * t) + 0.3 * torch.sin(2 * math.pi * 1000 * t + 0.5)
            + 0.2 * torch.sin(2 * math.pi * 3500 * t + 1.0))
    alias = 0.5 * torch.sin(2 * math.pi * 12000 * t)
    ref = torchaudio.functional.resample(wave, sr, 16000, lowpass_filter_width=64, rolloff=0.99,
                                         resampling_method="sinc_interp_kaiser", beta=14.769656459379492)
    save_file({"wave44k": wave.float(), "wave16k": ref.float(), "alias44k": alias.float()}, str(OUT))
    print(OUT, tuple(ref.shape))


if __name__ == "__main__":
    main()

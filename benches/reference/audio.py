"""Reference for `benches/benches/audio.rs`: torchaudio's MelSpectrogram
(16 kHz, n_fft 400, hop 160, 64 mels, power 2) and `log(x + 1e-6)` on 32
one-second clips."""

import torch
import torchaudio

from common import median_time, report, setup_torch


def main():
    setup_torch()
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=400, hop_length=160, n_mels=64)
    wave = torch.randn(32, 16000) * 0.1

    def logmel():
        with torch.no_grad():
            return torch.log(mel(wave) + 1e-6)

    report("cpu/logmel/32x1s", median_time(logmel, repeats=100))


if __name__ == "__main__":
    main()

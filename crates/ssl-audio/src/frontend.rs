//! The log-mel front end on libtorch, batched, on any device: a short-time
//! Fourier transform (periodic Hann window, centred frames with reflect
//! padding), the power spectrum, a triangular mel filterbank (HTK mel
//! scale, no normalisation) and `ln(mel + eps)`. Its mel spectrogram equals
//! torchaudio's `MelSpectrogram` with the same settings (checked by
//! `tests/logmel_parity.rs` against `tools/golden/logmel.py`).

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Front-end settings; the defaults are 16 kHz, `n_fft` 400 (25 ms), hop
/// 160 (10 ms) and 64 mel bands from 0 Hz to Nyquist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogMelConfig {
    /// Samples per second of the input.
    pub sample_rate: u32,
    /// FFT size (and window length).
    pub n_fft: i64,
    /// Samples between frames.
    pub hop_length: i64,
    /// Mel bands.
    pub n_mels: i64,
    /// Lowest filter edge in Hz.
    pub f_min: f64,
    /// Highest filter edge in Hz (`None`: Nyquist).
    pub f_max: Option<f64>,
    /// Added before the logarithm.
    pub eps: f64,
}

impl Default for LogMelConfig {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            n_fft: 400,
            hop_length: 160,
            n_mels: 64,
            f_min: 0.0,
            f_max: None,
            eps: 1e-6,
        }
    }
}

fn hz_to_mel(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

/// Triangular mel filters as torchaudio's `melscale_fbanks` (HTK scale, no
/// area normalisation): `[n_fft / 2 + 1, n_mels]`, f32 on the CPU. Built
/// with the same f32 tensor operations as torchaudio, so the weights agree
/// to the last bit or two.
pub fn mel_filterbank(cfg: &LogMelConfig) -> Tensor {
    let opts = (Kind::Float, Device::Cpu);
    let n_freqs = cfg.n_fft / 2 + 1;
    let f_max = cfg.f_max.unwrap_or(f64::from(cfg.sample_rate) / 2.0);
    let all_freqs = Tensor::linspace(0.0, f64::from(cfg.sample_rate / 2), n_freqs, opts);
    let m_pts = Tensor::linspace(hz_to_mel(cfg.f_min), hz_to_mel(f_max), cfg.n_mels + 2, opts);
    // 700 * (10^(m / 2595) - 1), in f32 like torchaudio's _mel_to_hz.
    let f_pts = (Tensor::from(10.0f32).pow(&(&m_pts / 2595.0)) - 1.0) * 700.0;
    let n = cfg.n_mels + 2;
    let f_diff = f_pts.narrow(0, 1, n - 1) - f_pts.narrow(0, 0, n - 1);
    let slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1); // [n_freqs, n_mels + 2]
    let down = -slopes.narrow(1, 0, n - 2) / f_diff.narrow(0, 0, n - 2);
    let up = slopes.narrow(1, 2, n - 2) / f_diff.narrow(0, 1, n - 2);
    down.minimum(&up).clamp_min(0.0)
}

/// Mel bands per block of the banded filterbank product.
const BAND_BLOCK: i64 = 8;

/// One block of adjacent mel filters and the frequency bins they cover.
#[derive(Debug)]
struct Band {
    /// First frequency bin with a non-zero weight in the block.
    lo: i64,
    /// `[hi - lo, mels in the block]`, the block's non-zero rows.
    weights: Tensor,
}

/// The front end, with its filterbank and window kept on one device.
///
/// Each mel filter is non-zero over a few adjacent frequency bins only, so
/// the filterbank product runs per block of [`BAND_BLOCK`] filters over the
/// bins that block covers: about a seventh of the multiply-adds of the full
/// `[n_fft / 2 + 1, n_mels]` product for the defaults, the same sums
/// without the zero terms.
#[derive(Debug)]
pub struct LogMel {
    /// Its settings.
    pub cfg: LogMelConfig,
    bands: Vec<Band>,
    window: Tensor,
}

impl LogMel {
    /// Builds the filterbank and window on `device`.
    pub fn new(cfg: &LogMelConfig, device: Device) -> Self {
        let window = Tensor::hann_window(cfg.n_fft, (Kind::Float, device));
        let fbank = mel_filterbank(cfg);
        let mut bands = Vec::new();
        let mut first = 0;
        while first < cfg.n_mels {
            let width = BAND_BLOCK.min(cfg.n_mels - first);
            let block = fbank.narrow(1, first, width);
            let rows: Vec<i64> =
                Vec::try_from(block.gt(0.0).any_dim(1, false).nonzero().view([-1])).unwrap_or_default();
            // A block of filters that all fall between two bins keeps one
            // row of zeros, so that its bands still come out (as zeros).
            let (lo, hi) = match (rows.first(), rows.last()) {
                (Some(&lo), Some(&hi)) => (lo, hi + 1),
                _ => (0, 1),
            };
            bands.push(Band { lo, weights: block.narrow(0, lo, hi - lo).contiguous().to_device(device) });
            first += width;
        }
        Self { cfg: cfg.clone(), bands, window }
    }

    /// The complex one-sided spectrum of already padded waveforms.
    ///
    /// # Shapes
    /// `[B, T + n_fft]` → `[B, n_fft / 2 + 1, frames]` complex
    fn spectrum(&self, padded: &Tensor) -> Tensor {
        padded.stft_center(
            self.cfg.n_fft,
            self.cfg.hop_length,
            self.cfg.n_fft,
            Some(&self.window),
            false,
            "constant",
            false,
            true,
            true,
            false,
        )
    }

    /// Mel power spectrogram with frames first.
    ///
    /// # Shapes
    /// `[B, T]` → `[B, frames, n_mels]`, contiguous
    fn mel_frames(&self, wave: &Tensor) -> Tensor {
        let pad = self.cfg.n_fft / 2;
        let wave = wave.to_kind(Kind::Float);
        let len = *wave.size().last().unwrap_or(&0);
        // Centred frames: reflect-pad n_fft / 2 on both sides by hand, as
        // `torch.stft(center=True)` does (tch always passes
        // `align_to_window`, which libtorch refuses together with
        // `center`). Two flipped slices and a concatenation cost a fifth
        // of libtorch's reflection-pad kernel; inputs too short to reflect
        // go to that kernel, which names the problem.
        let padded = if len > pad {
            Tensor::cat(
                &[
                    wave.narrow(1, 1, pad).flip([1]),
                    wave.shallow_clone(),
                    wave.narrow(1, len - 1 - pad, pad).flip([1]),
                ],
                1,
            )
        } else {
            wave.unsqueeze(1).reflection_pad1d([pad, pad]).squeeze_dim(1)
        };
        let spec = self.spectrum(&padded);
        // libtorch lays the spectrum out frames first; the power is
        // re² + im², not |z|², which would spend a quarter of the front end
        // in `hypot` only to square its result.
        let spec = spec.transpose(1, 2); // [B, frames, F], contiguous
        let (batch, frames, bins) = spec.size3().expect("stft gives [B, F, frames]");
        let power = (spec.real().square() + spec.imag().square()).view([batch * frames, bins]);
        let blocks: Vec<Tensor> = self
            .bands
            .iter()
            .map(|b| power.narrow(1, b.lo, b.weights.size()[0]).matmul(&b.weights))
            .collect();
        Tensor::cat(&blocks, 1).view([batch, frames, self.cfg.n_mels])
    }

    /// Mel power spectrogram, torchaudio's `MelSpectrogram(power=2)`.
    ///
    /// # Shapes
    /// `[B, T]` → `[B, n_mels, 1 + T / hop]`, a transposed view
    pub fn mel(&self, wave: &Tensor) -> Tensor {
        self.mel_frames(wave).transpose(1, 2)
    }

    /// `ln(mel + eps)`.
    ///
    /// # Shapes
    /// `[B, T]` → `[B, n_mels, 1 + T / hop]`, a transposed view
    pub fn forward(&self, wave: &Tensor) -> Tensor {
        let mut mel = self.mel_frames(wave);
        let _ = mel.g_add_scalar_(self.cfg.eps).log_();
        mel.transpose(1, 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The banded product against the dense one, including settings where
    /// some filters fall between two bins and are all zero.
    #[test]
    fn banded_filterbank_equals_the_dense_product() {
        tch::manual_seed(0);
        for (n_fft, n_mels, f_min) in [(400, 64, 0.0), (256, 128, 20.0), (512, 10, 300.0)] {
            let cfg = LogMelConfig { n_fft, hop_length: n_fft / 4, n_mels, f_min, ..LogMelConfig::default() };
            let front = LogMel::new(&cfg, Device::Cpu);
            let wave = Tensor::randn([3, 4000], (Kind::Float, Device::Cpu));
            let pad = n_fft / 2;
            let padded = wave.unsqueeze(1).reflection_pad1d([pad, pad]).squeeze_dim(1);
            let spec = front.spectrum(&padded);
            let dense = spec.abs().square().transpose(1, 2).matmul(&mel_filterbank(&cfg)).transpose(1, 2);
            let ours = front.mel(&wave);
            assert_eq!(ours.size(), dense.size());
            let d = (&ours - &dense).abs().max().double_value(&[]) / dense.abs().max().double_value(&[]);
            assert!(d < 1e-6, "n_fft {n_fft}, {n_mels} mels: banded differs by {d} of the maximum");
        }
    }
}

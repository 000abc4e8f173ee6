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

/// The front end, with its filterbank and window kept on one device.
#[derive(Debug)]
pub struct LogMel {
    /// Its settings.
    pub cfg: LogMelConfig,
    fbank: Tensor,
    window: Tensor,
}

impl LogMel {
    /// Builds the filterbank and window on `device`.
    pub fn new(cfg: &LogMelConfig, device: Device) -> Self {
        let window = Tensor::hann_window(cfg.n_fft, (Kind::Float, device));
        Self { cfg: cfg.clone(), fbank: mel_filterbank(cfg).to_device(device), window }
    }

    /// Mel power spectrogram, torchaudio's `MelSpectrogram(power=2)`.
    ///
    /// # Shapes
    /// `[B, T]` → `[B, n_mels, 1 + T / hop]`
    pub fn mel(&self, wave: &Tensor) -> Tensor {
        // Centred frames: reflect-pad n_fft / 2 on both sides by hand, as
        // `torch.stft(center=True)` does (tch always passes
        // `align_to_window`, which libtorch refuses together with `center`).
        let pad = self.cfg.n_fft / 2;
        let padded = wave.to_kind(Kind::Float).unsqueeze(1).reflection_pad1d([pad, pad]).squeeze_dim(1);
        let spec = padded.stft_center(
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
        );
        let power = spec.abs().square(); // [B, F, frames]
        power.transpose(1, 2).matmul(&self.fbank).transpose(1, 2)
    }

    /// `ln(mel + eps)`.
    ///
    /// # Shapes
    /// `[B, T]` → `[B, n_mels, 1 + T / hop]`
    pub fn forward(&self, wave: &Tensor) -> Tensor {
        (self.mel(wave) + self.cfg.eps).log()
    }
}

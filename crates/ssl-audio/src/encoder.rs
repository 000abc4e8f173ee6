//! BYOL-A's convolutional audio encoder (Niizumi et al., "BYOL for Audio",
//! <https://arxiv.org/abs/2103.06695>; the AudioNTT2020 layout): three
//! blocks of 3×3 convolution, BatchNorm, ReLU and 2×2 max-pooling over the
//! log-mel spectrogram, then per frame a two-layer MLP on the flattened
//! channels × bands, then max plus mean over time. Parameter names follow
//! an `nn.Sequential` (`features.0.weight`, `features.1.running_mean`,
//! `fc.3.bias`), checked against PyTorch in `tests/encoder_parity.rs`.

use serde::{Deserialize, Serialize};
use ssl_core::modules::batch_norm2d;
use ssl_core::vit::{Pool, Vit, VitConfig};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

/// The encoder's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioCnnConfig {
    /// Mel bands of the input (a multiple of 8).
    pub n_mels: i64,
    /// Channels of every convolution (64 in BYOL-A).
    pub channels: i64,
    /// Width of the MLP and of the output (2048 in BYOL-A).
    pub dim: i64,
    /// Dropout between the two MLP layers (0.3).
    pub dropout: f64,
}

impl AudioCnnConfig {
    /// BYOL-A's encoder for `n_mels` bands with output width `dim`.
    pub fn byol_a(n_mels: i64, dim: i64) -> Self {
        Self { n_mels, channels: 64, dim, dropout: 0.3 }
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct AudioCnn {
    blocks: Vec<(nn::Conv2D, ssl_core::modules::BatchNorm)>,
    fc0: nn::Linear,
    fc3: nn::Linear,
    cfg: AudioCnnConfig,
}

impl AudioCnn {
    /// Builds the encoder under `p`.
    ///
    /// # Panics
    /// If `n_mels` is not a positive multiple of 8.
    pub fn new(p: &nn::Path, cfg: &AudioCnnConfig) -> Self {
        assert!(cfg.n_mels > 0 && cfg.n_mels % 8 == 0, "n_mels {} is not a multiple of 8", cfg.n_mels);
        let f = p / "features";
        let conv = nn::ConvConfig { padding: 1, ..Default::default() };
        let blocks = (0..3)
            .map(|i| {
                let c_in = if i == 0 { 1 } else { cfg.channels };
                (
                    nn::conv2d(&f / (4 * i), c_in, cfg.channels, 3, conv),
                    batch_norm2d(&f / (4 * i + 1), cfg.channels, Default::default()),
                )
            })
            .collect();
        let fc = p / "fc";
        let fc0 = nn::linear(&fc / 0, cfg.channels * (cfg.n_mels / 8), cfg.dim, Default::default());
        let fc3 = nn::linear(&fc / 3, cfg.dim, cfg.dim, Default::default());
        Self { blocks, fc0, fc3, cfg: cfg.clone() }
    }

    /// Output width.
    pub fn feature_dim(&self) -> i64 {
        self.cfg.dim
    }
}

impl ModuleT for AudioCnn {
    /// # Shapes
    /// `[B, 1, n_mels, T]` or `[B, n_mels, T]` (T ≥ 8) → `[B, dim]`
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = if x.dim() == 3 { x.unsqueeze(1) } else { x.shallow_clone() };
        for (conv, bn) in &self.blocks {
            x = x.apply(conv).apply_t(bn, train).relu().max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        }
        // [B, C, F, T] → [B, T, F·C]; `flatten` rather than a reshape to
        // sizes read here, so that a traced export takes any batch and
        // length.
        let x = x.permute([0, 3, 2, 1]).flatten(2, 3);
        let x = self.fc0.forward(&x).relu().dropout(self.cfg.dropout, train);
        let x = self.fc3.forward(&x).relu();
        x.amax([1i64].as_slice(), false) + x.mean_dim([1i64].as_slice(), false, x.kind())
    }
}
/// An audio encoder's configuration: BYOL-A's CNN or a patch transformer
/// (ssl-core's [`Vit`] on the `bands × frames` spectrogram; mean-pooled as
/// Audio-MAE when built by [`AudioEncoderConfig::transformer`], stacked by
/// `methods::transformer`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AudioEncoderConfig {
    /// [`AudioCnn`].
    Cnn(AudioCnnConfig),
    /// [`Vit`] with one input channel.
    Transformer(VitConfig),
}

impl AudioEncoderConfig {
    /// A patch transformer for `n_mels × frames` spectrograms: `dim` wide,
    /// `depth` blocks of `dim / 32` heads, `patch × patch` patches, fixed
    /// sin-cos positions, mean pooling.
    pub fn transformer(n_mels: i64, frames: i64, patch: i64, dim: i64, depth: i64) -> Self {
        Self::Transformer(Self::transformer_vit(n_mels, frames, patch, dim, depth))
    }

    /// The [`VitConfig`] of [`AudioEncoderConfig::transformer`], to change
    /// further (e.g. its pooling) before wrapping it.
    pub fn transformer_vit(n_mels: i64, frames: i64, patch: i64, dim: i64, depth: i64) -> VitConfig {
        VitConfig {
            depth,
            dim,
            heads: (dim / 32).max(1),
            ..VitConfig::tiny(n_mels, patch)
                .with_in_channels(1)
                .with_input(n_mels, frames)
                .with_pool(Pool::Mean)
        }
    }

    /// An error when the encoder cannot be built for its input (a
    /// transformer's `bands × frames` must split into whole patches).
    pub fn check(&self) -> crate::Result<()> {
        match self {
            Self::Cnn(_) => Ok(()),
            Self::Transformer(v) => v.check().map_err(|e| {
                crate::Error::Config(format!(
                    "{e}; set --frames and --n-mels to multiples of {}",
                    v.patch_size
                ))
            }),
        }
    }

    /// Output width.
    pub fn feature_dim(&self) -> i64 {
        match self {
            Self::Cnn(c) => c.dim,
            Self::Transformer(v) => v.feature_dim(),
        }
    }
}

/// See [`AudioEncoderConfig`].
#[derive(Debug)]
pub enum AudioEncoder {
    /// BYOL-A's CNN.
    Cnn(AudioCnn),
    /// A patch transformer.
    Transformer(Box<Vit>),
}

impl AudioEncoder {
    /// Builds the encoder under `p`.
    pub fn new(p: &nn::Path, cfg: &AudioEncoderConfig) -> Self {
        match cfg {
            AudioEncoderConfig::Cnn(c) => Self::Cnn(AudioCnn::new(p, c)),
            AudioEncoderConfig::Transformer(v) => Self::Transformer(Box::new(Vit::new(p, v))),
        }
    }

    /// Output width.
    pub fn feature_dim(&self) -> i64 {
        match self {
            Self::Cnn(c) => c.feature_dim(),
            Self::Transformer(v) => v.feature_dim(),
        }
    }
}

impl ModuleT for AudioEncoder {
    /// # Shapes
    /// `[B, 1, n_mels, T]` → `[B, dim]`
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Self::Cnn(c) => c.forward_t(x, train),
            Self::Transformer(v) => v.forward_t(x, train),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transformer_whose_input_does_not_split_into_patches_is_an_error() {
        // `--method msm --frames 100` used to panic in an assert.
        let e = AudioEncoderConfig::transformer(64, 100, 8, 128, 4).check().unwrap_err().to_string();
        assert!(e.contains("64 × 100") && e.contains("--frames"), "{e}");
        AudioEncoderConfig::transformer(64, 96, 8, 128, 4).check().unwrap();
    }
}

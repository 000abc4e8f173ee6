//! BYOL-A's convolutional audio encoder (Niizumi et al., "BYOL for Audio",
//! <https://arxiv.org/abs/2103.06695>; the AudioNTT2020 layout): three
//! blocks of 3×3 convolution, BatchNorm, ReLU and 2×2 max-pooling over the
//! log-mel spectrogram, then per frame a two-layer MLP on the flattened
//! channels × bands, then max plus mean over time. Parameter names follow
//! an `nn.Sequential` (`features.0.weight`, `features.1.running_mean`,
//! `fc.3.bias`), checked against PyTorch in `tests/encoder_parity.rs`.
//!
//! [`AudioCnnConfig::byol_a_v2`] is BYOL-A v2's AudioNTT2022 ("BYOL for
//! Audio: Exploring Pre-trained General-purpose Audio Representations",
//! <https://arxiv.org/abs/2204.07402>): two blocks, and each frame's
//! convolutional features stacked beside its MLP output before the pooling,
//! so that the representation keeps the local features as well.

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
    /// Convolution blocks, each halving bands and frames (BYOL-A: 3,
    /// v2: 2); `n_mels` must be a multiple of `2^conv_blocks`.
    #[serde(default = "three")]
    pub conv_blocks: i64,
    /// Stack each frame's flattened convolutional features (`channels ×
    /// n_mels / 2^conv_blocks`) beside its MLP output before pooling (v2).
    #[serde(default)]
    pub stack: bool,
}

fn three() -> i64 {
    3
}

impl AudioCnnConfig {
    /// BYOL-A's encoder for `n_mels` bands with output width `dim`.
    pub fn byol_a(n_mels: i64, dim: i64) -> Self {
        Self { n_mels, channels: 64, dim, dropout: 0.3, conv_blocks: 3, stack: false }
    }

    /// BYOL-A v2's AudioNTT2022 for `n_mels` bands: two blocks, an MLP
    /// `dim` wide, the convolutional features stacked beside it (output
    /// `64 · n_mels / 4 + dim`: 3,072 for 64 bands and `dim` 2,048, the
    /// paper's).
    pub fn byol_a_v2(n_mels: i64, dim: i64) -> Self {
        Self { conv_blocks: 2, stack: true, ..Self::byol_a(n_mels, dim) }
    }

    /// Width of a frame's flattened convolutional features.
    pub fn conv_dim(&self) -> i64 {
        self.channels * (self.n_mels >> self.conv_blocks)
    }

    /// Output width: `dim`, plus [`AudioCnnConfig::conv_dim`] when stacked.
    pub fn feature_dim(&self) -> i64 {
        self.dim + if self.stack { self.conv_dim() } else { 0 }
    }

    /// Why the blocks cannot be built on `n_mels` bands, if they cannot:
    /// 1 to 6 blocks, each halving a band count it must divide.
    fn shape_error(&self) -> Option<String> {
        let m = 1i64 << self.conv_blocks.clamp(0, 6);
        (!(1..=6).contains(&self.conv_blocks) || self.n_mels <= 0 || self.n_mels % m != 0).then(|| {
            format!(
                "the CNN's {} convolution blocks (1 to 6) need --n-mels a positive multiple of {m}, not {}",
                self.conv_blocks, self.n_mels
            )
        })
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
    /// If `n_mels` is not a positive multiple of `2^conv_blocks`, or there
    /// are not 1 to 6 blocks ([`AudioEncoderConfig::check`] says so as an
    /// error).
    pub fn new(p: &nn::Path, cfg: &AudioCnnConfig) -> Self {
        if let Some(e) = cfg.shape_error() {
            panic!("{e}");
        }
        let f = p / "features";
        let conv = nn::ConvConfig { padding: 1, ..Default::default() };
        let blocks = (0..cfg.conv_blocks)
            .map(|i| {
                let c_in = if i == 0 { 1 } else { cfg.channels };
                (
                    nn::conv2d(&f / (4 * i), c_in, cfg.channels, 3, conv),
                    batch_norm2d(&f / (4 * i + 1), cfg.channels, Default::default()),
                )
            })
            .collect();
        let fc = p / "fc";
        let fc0 = nn::linear(&fc / 0, cfg.conv_dim(), cfg.dim, Default::default());
        let fc3 = nn::linear(&fc / 3, cfg.dim, cfg.dim, Default::default());
        Self { blocks, fc0, fc3, cfg: cfg.clone() }
    }

    /// Output width.
    pub fn feature_dim(&self) -> i64 {
        self.cfg.feature_dim()
    }
}

impl ModuleT for AudioCnn {
    /// # Shapes
    /// `[B, 1, n_mels, T]` or `[B, n_mels, T]` (T ≥ `2^conv_blocks`) →
    /// `[B, feature_dim]`
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = if x.dim() == 3 { x.unsqueeze(1) } else { x.shallow_clone() };
        for (conv, bn) in &self.blocks {
            x = x.apply(conv).apply_t(bn, train).relu().max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        }
        // [B, C, F, T] → [B, T, F·C]; `flatten` rather than a reshape to
        // sizes read here, so that a traced export takes any batch and
        // length.
        let x = x.permute([0, 3, 2, 1]).flatten(2, 3);
        let h = self.fc0.forward(&x).relu().dropout(self.cfg.dropout, train);
        let h = self.fc3.forward(&h).relu();
        let x = if self.cfg.stack { Tensor::cat(&[x, h], 2) } else { h };
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
            Self::Cnn(c) => c.shape_error().map_or(Ok(()), |e| Err(crate::Error::Config(e))),
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
            Self::Cnn(c) => c.feature_dim(),
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

    #[test]
    fn v2_stacks_its_convolutional_features_beside_the_mlp() {
        let cfg = AudioCnnConfig::byol_a_v2(64, 2048);
        assert_eq!((cfg.conv_dim(), cfg.feature_dim()), (1024, 3072), "the paper's 3,072");
        let small = AudioCnnConfig { channels: 4, ..AudioCnnConfig::byol_a_v2(16, 8) };
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = AudioCnn::new(&vs.root(), &small);
        let x = Tensor::randn([3, 1, 16, 12], (tch::Kind::Float, tch::Device::Cpu));
        assert_eq!(net.forward_t(&x, false).size(), [3, 4 * 4 + 8]);
        // A config written before v2 reads as BYOL-A's three blocks.
        let old: AudioCnnConfig =
            serde_json::from_str(r#"{"n_mels": 64, "channels": 64, "dim": 1024, "dropout": 0.3}"#).unwrap();
        assert_eq!(old, AudioCnnConfig::byol_a(64, 1024));
        let e = AudioEncoderConfig::Cnn(AudioCnnConfig { conv_blocks: 4, ..AudioCnnConfig::byol_a(40, 8) })
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("multiple of 16") && e.contains("40"), "{e}");
    }
}

//! Masked autoencoder (He et al., "Masked Autoencoders Are Scalable Vision
//! Learners", <https://arxiv.org/abs/2111.06377>), for images and, on
//! log-mel spectrograms, masked spectrogram modelling (Huang et al.,
//! "Masked Autoencoders that Listen", <https://arxiv.org/abs/2207.06405>):
//! a patch transformer sees a random 25% of the patches; a light decoder gets the encoded patches plus mask
//! tokens and predicts the pixels of the removed patches. The loss is the
//! MSE on per-patch normalised pixels, over removed patches only.
//!
//! Names follow the official MAE code: the encoder at the root
//! (`patch_embed`, `cls_token`, `pos_embed`, `blocks`, `norm`), then
//! `decoder_embed`, `mask_token`, `decoder_pos_embed`, `decoder_blocks`,
//! `decoder_norm`, `decoder_pred`.

use crate::amp::at_least_f32;
use crate::method::{Batch, Method, Output};
use crate::modules::{sincos_pos_embed_hw, Block, BlockConfig};
use crate::vit::{patchify, random_masking, Pool, Vit, VitConfig};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// MAE's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MaeConfig {
    /// The encoder.
    pub encoder: VitConfig,
    /// Decoder width (512 in the paper).
    pub decoder_dim: i64,
    /// Decoder blocks (8).
    pub decoder_depth: i64,
    /// Decoder heads (16).
    pub decoder_heads: i64,
    /// Fraction of patches removed (0.75).
    pub mask_ratio: f64,
    /// Normalise each target patch by its own mean and variance.
    pub norm_pix_loss: bool,
}

impl MaeConfig {
    /// A decoder of a quarter of the paper's depth and width relative to the
    /// encoder, which suits small encoders: width `encoder.dim`, 2 blocks.
    pub fn light(encoder: VitConfig) -> Self {
        Self {
            decoder_dim: encoder.dim,
            decoder_depth: 2,
            decoder_heads: encoder.heads,
            mask_ratio: 0.75,
            norm_pix_loss: true,
            encoder,
        }
    }
}

/// MAE; see the module docs.
pub struct Mae {
    encoder: Vit,
    decoder_embed: nn::Linear,
    mask_token: Tensor,
    decoder_pos_embed: Tensor,
    decoder_blocks: Vec<Block>,
    decoder_norm: nn::LayerNorm,
    decoder_pred: nn::Linear,
    cfg: MaeConfig,
}

impl Mae {
    /// Builds encoder and decoder under `p`.
    pub fn new(p: &nn::Path, cfg: &MaeConfig) -> Self {
        let e = &cfg.encoder;
        let encoder = Vit::new(p, e);
        let d = cfg.decoder_dim;
        let decoder_embed = nn::linear(p / "decoder_embed", e.dim, d, Default::default());
        let mask_token = p.var("mask_token", &[1, 1, d], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        let (gh, gw) = e.grid_hw();
        let decoder_pos_embed =
            p.add("decoder_pos_embed", sincos_pos_embed_hw(d, gh, gw).to_device(p.device()), false);
        let bc = BlockConfig { dim: d, heads: cfg.decoder_heads, mlp_ratio: 4.0, eps: 1e-6 };
        let decoder_blocks =
            (0..cfg.decoder_depth).map(|i| Block::new(&(p / "decoder_blocks" / i), &bc)).collect();
        let decoder_norm = nn::layer_norm(
            p / "decoder_norm",
            vec![d],
            nn::LayerNormConfig { eps: 1e-6, ..Default::default() },
        );
        let out = e.patch_size * e.patch_size * e.in_channels;
        let decoder_pred = nn::linear(p / "decoder_pred", d, out, Default::default());
        Self {
            encoder,
            decoder_embed,
            mask_token,
            decoder_pos_embed,
            decoder_blocks,
            decoder_norm,
            decoder_pred,
            cfg: cfg.clone(),
        }
    }

    /// Reconstruction of every patch, the mask (1 = removed) and the
    /// (normalised) targets.
    ///
    /// # Shapes
    /// `[B, C, H, W]` → `(pred [B, N, p*p*C], mask [B, N], target [B, N, p*p*C])`
    pub fn reconstruct(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let (pred, mask, target, _) = self.reconstruct_with_features(x);
        (pred, mask, target)
    }

    /// [`Mae::reconstruct`], and the encoder's pooled output on the kept
    /// patches `[B, feature_dim]` (the training features the trainer's
    /// online probe and collapse figures read; [`Pool::Stacked`] puts zeros
    /// in the removed patches' places).
    pub fn reconstruct_with_features(&self, x: &Tensor) -> (Tensor, Tensor, Tensor, Tensor) {
        let (kept, mask, ids_restore) = random_masking(&self.encoder.embed_patches(x), self.cfg.mask_ratio);
        let encoded = self.encoder.encode_tokens(&kept);
        let features = match self.cfg.encoder.pool {
            // The kept tokens in their places, zeros in the removed ones.
            Pool::Stacked => {
                let zero = Tensor::zeros([1, 1, encoded.size()[2]], (encoded.kind(), encoded.device()));
                self.encoder.pool_tokens(&restore_order(&encoded, &zero, &ids_restore))
            }
            Pool::Cls | Pool::Mean => self.encoder.pool_tokens(&encoded),
        };
        let latent = encoded.apply(&self.decoder_embed);
        let n = ids_restore.size()[1];
        let y = restore_order(&latent, &self.mask_token, &ids_restore) + &self.decoder_pos_embed;
        let y =
            self.decoder_blocks.iter().fold(y, |y, blk| blk.forward_t(&y, false)).apply(&self.decoder_norm);
        let pred = y.apply(&self.decoder_pred).narrow(1, 1, n);
        let mut target = patchify(x, self.cfg.encoder.patch_size);
        if self.cfg.norm_pix_loss {
            let mean = target.mean_dim([-1i64].as_slice(), true, target.kind());
            let var = target.var_dim([-1i64].as_slice(), true, true);
            target = (target - mean) / (var + 1e-6).sqrt();
        }
        (pred, mask, target, features)
    }
}

/// MSE per patch, averaged over removed patches only.
///
/// # Shapes
/// `pred, target: [B, N, P]`, `mask: [B, N]` → scalar
pub fn masked_mse(pred: &Tensor, target: &Tensor, mask: &Tensor) -> Tensor {
    let kind = pred.kind();
    let per_patch = (pred - target).square().mean_dim([-1i64].as_slice(), false, kind);
    (per_patch * mask).sum(kind) / mask.sum(kind)
}

impl Method for Mae {
    fn name(&self) -> &'static str {
        "mae"
    }
    /// Each sample's loss stands alone: no batch statistics or negatives.
    fn min_micro_batch(&self) -> usize {
        1
    }

    /// Uses the first view only.
    /// Each rank's mean over its masked patches (every sample masks as
    /// many), so DDP's average over the ranks is the global mean.
    fn loss(&self, batch: &Batch, _train: bool) -> crate::Result<Output> {
        let (pred, mask, target, features) = self.reconstruct_with_features(&batch.views[0]);
        let loss = masked_mse(&at_least_f32(&pred), &at_least_f32(&target), &mask);
        Ok(Output::new(loss).with_features(features))
    }

    fn features(&self, x: &Tensor) -> Tensor {
        self.encoder.forward_t(x, false)
    }
}

/// The tokens of the kept patches (class token first) back in patch
/// order, with `fill` in the removed patches' places.
///
/// # Shapes
/// `tokens: [B, 1 + K, D]`, `fill: [1, 1, D]`, `ids_restore: [B, N]` → `[B, 1 + N, D]`
fn restore_order(tokens: &Tensor, fill: &Tensor, ids_restore: &Tensor) -> Tensor {
    let (b, k1, d) = tokens.size3().expect("tokens are [B, 1 + K, D]");
    let n = ids_restore.size()[1];
    let patches = Tensor::cat(&[tokens.narrow(1, 1, k1 - 1), fill.expand([b, n + 1 - k1, d], false)], 1)
        .gather(1, &ids_restore.unsqueeze(-1).expand([b, n, d], false), false);
    Tensor::cat(&[tokens.narrow(1, 0, 1), patches], 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn loss_counts_only_removed_patches() {
        let pred = Tensor::zeros([1, 4, 2], (Kind::Float, Device::Cpu));
        let target = Tensor::from_slice(&[1.0f32, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]).reshape([1, 4, 2]);
        let mask = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 1.0]).reshape([1, 4]);
        // Removed patches 1 and 3: errors 4 and 16, mean 10.
        assert_eq!(masked_mse(&pred, &target, &mask).double_value(&[]), 10.0);
    }

    #[test]
    fn reconstruction_has_one_prediction_per_patch() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let enc = VitConfig {
            image_size: 8,
            patch_size: 2,
            in_channels: 1,
            dim: 12,
            depth: 1,
            heads: 3,
            mlp_ratio: 2.0,
            fixed_pos_embed: true,
            pool: crate::vit::Pool::Cls,
            drop_path_rate: 0.0,
            image_width: Some(16),
        };
        let mae = Mae::new(&vs.root(), &MaeConfig::light(enc));
        // A rectangular input (8 x 16, a spectrogram's shape): 4 x 8 patches.
        let x = Tensor::randn([3, 1, 8, 16], (Kind::Float, Device::Cpu));
        let (pred, mask, target) = mae.reconstruct(&x);
        assert_eq!(pred.size(), [3, 32, 4]);
        assert_eq!(target.size(), [3, 32, 4]);
        assert_eq!(mask.sum(Kind::Float).double_value(&[]), 72.0);
        // Normalised targets: zero mean per patch.
        assert!(target.mean_dim([-1i64].as_slice(), false, Kind::Float).abs().max().double_value(&[]) < 1e-5);
        assert!(vs.variables().contains_key("decoder_blocks.0.attn.qkv.weight"));

        // Stacked pooling: the training features put the kept tokens back in
        // their places (zeros elsewhere) and are as wide as the evaluation's.
        let stacked = VitConfig { pool: crate::vit::Pool::Stacked, ..mae.cfg.encoder.clone() };
        let vs = nn::VarStore::new(Device::Cpu);
        let mae = Mae::new(&vs.root(), &MaeConfig { mask_ratio: 0.0, ..MaeConfig::light(stacked) });
        let (.., features) = mae.reconstruct_with_features(&x);
        assert_eq!(features.size(), [3, 4 * 12]);
        // With nothing removed they are the evaluation features.
        assert!(features.allclose(&mae.features(&x), 1e-5, 1e-5, false));
    }
}

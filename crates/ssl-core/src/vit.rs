//! Patch transformer: the Vision Transformer (Dosovitskiy et al., "An Image
//! is Worth 16x16 Words", <https://arxiv.org/abs/2010.11929>) with timm's
//! parameter names (`patch_embed.proj`, `cls_token`, `pos_embed`,
//! `blocks.N.*`, `norm`), so weights move to and from timm's
//! `VisionTransformer` through safetensors. Inputs may be rectangular (a
//! log-mel spectrogram of `bands × frames`, as in AST and Audio-MAE), and
//! the output is the class token (timm's `global_pool="token"`) or the mean
//! of the patch tokens (`"avg"`). The classifier head is left out. Images
//! (ssl-vision) and spectrograms (ssl-audio) share it, and [`crate::mae`].

use crate::modules::{sincos_pos_embed_hw, Block, BlockConfig};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// How [`Vit`] pools its output tokens into one vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// The class token after the final norm (timm's `"token"`).
    #[default]
    Cls,
    /// The mean of the patch tokens after the final norm (timm's `"avg"`
    /// without `fc_norm`; Audio-MAE's choice for spectrograms).
    Mean,
    /// Per column of the patch grid (a time step of a spectrogram), its
    /// patch tokens after the final norm concatenated from top to bottom
    /// (over frequency), then the mean over the columns: `rows × dim` wide.
    /// MSM-MAE's and M2D's clip features (Niizumi et al.,
    /// <https://arxiv.org/abs/2204.12260>), which keep what each band says
    /// apart, as BYOL-A's CNN does.
    Stacked,
}

/// A ViT's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    /// Input height (and width, unless `image_width` is set).
    pub image_size: i64,
    /// Input width, for rectangular inputs such as spectrograms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_width: Option<i64>,
    /// Patch height and width.
    pub patch_size: i64,
    /// Input channels.
    pub in_channels: i64,
    /// Token width.
    pub dim: i64,
    /// Blocks.
    pub depth: i64,
    /// Attention heads.
    pub heads: i64,
    /// MLP width as a multiple of `dim`.
    pub mlp_ratio: f64,
    /// Keep the (sin-cos initialised) position embeddings frozen, as MAE
    /// and MoCo v3 do.
    pub fixed_pos_embed: bool,
    /// Output pooling.
    #[serde(default)]
    pub pool: Pool,
    /// Stochastic depth in training: block `i` of `depth` drops its
    /// branches per sample with a rate rising linearly from 0 to this
    /// (timm's `drop_path_rate`; MAE fine-tunes with 0.1). Weights do not
    /// depend on it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drop_path_rate: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl VitConfig {
    /// Layer-wise learning-rate decay for fine-tuning (BEiT; MAE uses 0.75
    /// for ViT-B): block `i` of `depth` gets `decay^(depth - i)`, the patch
    /// embedding, class token and position embeddings `decay^(depth + 1)`,
    /// the final norm (and anything else, such as a head) 1. Names are the
    /// backbone's under `prefix`, as [`ssl_core::optim::OptimizerConfig::lr_scales`]
    /// takes them.
    pub fn layer_decay_scales(&self, prefix: &str, decay: f64) -> Vec<(String, f64)> {
        let d = self.depth;
        let mut v: Vec<(String, f64)> =
            (0..d).map(|i| (format!("{prefix}blocks.{i}."), decay.powi((d - i) as i32))).collect();
        for name in ["patch_embed.", "cls_token", "pos_embed"] {
            v.push((format!("{prefix}{name}"), decay.powi(d as i32 + 1)));
        }
        v
    }

    /// ViT-Tiny (192 wide, 12 blocks, 3 heads).
    pub fn tiny(image_size: i64, patch_size: i64) -> Self {
        Self {
            image_size,
            image_width: None,
            patch_size,
            in_channels: 3,
            dim: 192,
            depth: 12,
            heads: 3,
            mlp_ratio: 4.0,
            fixed_pos_embed: true,
            pool: Pool::Cls,
            drop_path_rate: 0.0,
        }
    }
    /// ViT-Small (384 wide, 12 blocks, 6 heads).
    pub fn small(image_size: i64, patch_size: i64) -> Self {
        Self { dim: 384, heads: 6, ..Self::tiny(image_size, patch_size) }
    }
    /// A 96-wide, 6-block, 3-head ViT for the bundled set on a CPU.
    pub fn mini(image_size: i64, patch_size: i64) -> Self {
        Self { dim: 96, depth: 6, ..Self::tiny(image_size, patch_size) }
    }
    /// Same network for another number of input channels.
    pub fn with_in_channels(self, in_channels: i64) -> Self {
        Self { in_channels, ..self }
    }
    /// Same network for `height × width` inputs.
    pub fn with_input(self, height: i64, width: i64) -> Self {
        Self { image_size: height, image_width: (width != height).then_some(width), ..self }
    }
    /// Same network with stochastic depth up to `rate` (see
    /// [`VitConfig::drop_path_rate`]).
    pub fn with_drop_path(self, rate: f64) -> Self {
        Self { drop_path_rate: rate, ..self }
    }
    /// The drop-path rate of each block: `0 … drop_path_rate` in `depth`
    /// even steps, in f32 as timm's `torch.linspace`.
    pub fn drop_path_rates(&self) -> Vec<f64> {
        if self.depth <= 0 {
            return Vec::new();
        }
        let r = Tensor::linspace(0.0, self.drop_path_rate, self.depth, (Kind::Float, tch::Device::Cpu));
        Vec::<f32>::try_from(&r).map(|v| v.into_iter().map(f64::from).collect()).unwrap_or_default()
    }
    /// Same network with another output pooling.
    pub fn with_pool(self, pool: Pool) -> Self {
        Self { pool, ..self }
    }
    /// An error saying what to change when the shape cannot be built: an
    /// input side that is not a multiple of the patch size, or a width not
    /// divisible by the heads ([`Vit::new`] panics on them).
    pub fn check(&self) -> crate::Result<()> {
        let p = self.patch_size;
        let (h, w) = (self.image_size, self.width());
        if p <= 0 || h <= 0 || w <= 0 || h % p != 0 || w % p != 0 {
            let hint = if p > 0 {
                format!(" (e.g. {} × {})", (h / p).max(1) * p, (w / p).max(1) * p)
            } else {
                String::new()
            };
            return Err(crate::Error::Config(format!(
                "a {h} × {w} input does not split into {p} × {p} patches: both sides must be positive multiples of {p}{hint}"
            )));
        }
        if self.heads <= 0 || self.dim % self.heads != 0 {
            return Err(crate::Error::Config(format!(
                "a ViT {} wide cannot have {} attention heads (the width must be a multiple)",
                self.dim, self.heads
            )));
        }
        Ok(())
    }
    /// Input width.
    pub fn width(&self) -> i64 {
        self.image_width.unwrap_or(self.image_size)
    }
    /// Patch rows and columns.
    pub fn grid_hw(&self) -> (i64, i64) {
        (self.image_size / self.patch_size, self.width() / self.patch_size)
    }
    /// Width of the pooled output: `dim`, or `rows × dim` for
    /// [`Pool::Stacked`].
    pub fn feature_dim(&self) -> i64 {
        match self.pool {
            Pool::Stacked => self.grid_hw().0 * self.dim,
            Pool::Cls | Pool::Mean => self.dim,
        }
    }
    /// Patches per input.
    pub fn num_patches(&self) -> i64 {
        let (h, w) = self.grid_hw();
        h * w
    }
}

/// The ViT backbone; see the module docs.
#[derive(Debug)]
pub struct Vit {
    patch: nn::Conv2D,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    cfg: VitConfig,
}

impl Vit {
    /// Builds the backbone under `p`.
    ///
    /// # Panics
    /// If the input height or width is not a multiple of the patch size.
    pub fn new(p: &nn::Path, cfg: &VitConfig) -> Self {
        assert!(
            cfg.patch_size > 0 && cfg.image_size % cfg.patch_size == 0 && cfg.width() % cfg.patch_size == 0,
            "input {}x{} is not a multiple of patch size {}",
            cfg.image_size,
            cfg.width(),
            cfg.patch_size
        );
        let conv = nn::ConvConfig { stride: cfg.patch_size, ..Default::default() };
        let patch = nn::conv2d(p / "patch_embed" / "proj", cfg.in_channels, cfg.dim, cfg.patch_size, conv);
        let cls_token = p.var("cls_token", &[1, 1, cfg.dim], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        let (gh, gw) = cfg.grid_hw();
        let pos = sincos_pos_embed_hw(cfg.dim, gh, gw).to_device(p.device());
        let pos_embed = p.add("pos_embed", pos, !cfg.fixed_pos_embed);
        let block_cfg = BlockConfig { dim: cfg.dim, heads: cfg.heads, mlp_ratio: cfg.mlp_ratio, eps: 1e-6 };
        let blocks = cfg
            .drop_path_rates()
            .into_iter()
            .enumerate()
            .map(|(i, rate)| Block::new(&(p / "blocks" / i), &block_cfg).with_drop_path(rate))
            .collect();
        let norm = nn::layer_norm(
            p / "norm",
            vec![cfg.dim],
            nn::LayerNormConfig { eps: 1e-6, ..Default::default() },
        );
        Self { patch, cls_token, pos_embed, blocks, norm, cfg: cfg.clone() }
    }

    /// The configuration.
    pub fn config(&self) -> &VitConfig {
        &self.cfg
    }

    /// Patch embeddings with their position embeddings, no class token.
    /// An input of another size than the configured one (DINO's local
    /// crops) gets the position embeddings resampled to its patch grid, as
    /// timm's `resample_abs_pos_embed` does (bicubic, antialiased).
    ///
    /// # Shapes
    /// `[B, C, H, W]` → `[B, N, D]`
    pub fn embed_patches(&self, x: &Tensor) -> Tensor {
        let t = x.apply(&self.patch);
        let (h, w) = (t.size()[2], t.size()[3]);
        let t = t.flatten(2, 3).transpose(1, 2);
        t + self.patch_pos_embed(h, w)
    }

    /// The patch tokens' position embeddings for a `rows × cols` patch grid,
    /// `[1, rows·cols, D]`: the trained ones on the configured grid, else
    /// resampled (bicubic with antialiasing, `align_corners=False`).
    pub fn patch_pos_embed(&self, rows: i64, cols: i64) -> Tensor {
        let pos = self.pos_embed.narrow(1, 1, self.cfg.num_patches());
        let (gh, gw) = self.cfg.grid_hw();
        if (rows, cols) == (gh, gw) {
            return pos;
        }
        let d = self.cfg.dim;
        let grid = pos.reshape([1, gh, gw, d]).permute([0, 3, 1, 2]);
        // Resampled in f32 at least, as timm does.
        let grid = crate::amp::at_least_f32(&grid);
        let out = grid.internal_upsample_bicubic2d_aa([rows, cols], false, None, None);
        out.permute([0, 2, 3, 1]).reshape([1, rows * cols, d]).to_kind(self.pos_embed.kind())
    }

    /// The class token (with its position embedding) prepended, the blocks
    /// and the final norm, on already embedded (possibly masked) patches;
    /// no stochastic depth.
    ///
    /// # Shapes
    /// `[B, M, D]` → `[B, M + 1, D]`
    pub fn encode_tokens(&self, patches: &Tensor) -> Tensor {
        self.encode_tokens_t(patches, false)
    }

    /// [`Vit::encode_tokens`], with stochastic depth when `train` (and a
    /// drop-path rate is set).
    pub fn encode_tokens_t(&self, patches: &Tensor, train: bool) -> Tensor {
        // Expanded to the patches' batch with `expand_as`, so that a traced
        // export (TorchScript) takes any batch size.
        let cls = (&self.cls_token + self.pos_embed.narrow(1, 0, 1)).expand_as(&patches.narrow(1, 0, 1));
        let x = Tensor::cat(&[cls, patches.shallow_clone()], 1);
        self.blocks.iter().fold(x, |x, blk| blk.forward_t(&x, train)).apply(&self.norm)
    }

    /// All output tokens (timm's `forward_features`), in evaluation mode.
    ///
    /// # Shapes
    /// `[B, C, H, W]` → `[B, N + 1, D]`
    pub fn forward_tokens(&self, x: &Tensor) -> Tensor {
        self.forward_tokens_t(x, false)
    }

    /// All output tokens, with stochastic depth when `train`.
    pub fn forward_tokens_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.encode_tokens_t(&self.embed_patches(x), train)
    }

    /// Width of the pooled output ([`VitConfig::feature_dim`]).
    pub fn feature_dim(&self) -> i64 {
        self.cfg.feature_dim()
    }
}

impl ModuleT for Vit {
    /// The pooled output tokens (timm's pre-logits): the class token, or
    /// the mean of the patch tokens; see [`Pool`].
    ///
    /// # Shapes
    /// `[B, C, H, W]` → `[B, D]`
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.pool_tokens(&self.forward_tokens_t(xs, train))
    }
}

impl Vit {
    /// Output tokens pooled as configured (see [`Pool`]): the class token,
    /// the mean of the other tokens, or their columns stacked and averaged
    /// (which needs the whole grid, in row-major order).
    ///
    /// # Shapes
    /// `[B, 1 + M, D]` → `[B, D]` (`[B, rows · D]` for [`Pool::Stacked`], where `M = rows · cols`)
    pub fn pool_tokens(&self, t: &Tensor) -> Tensor {
        let patches = t.narrow(1, 1, t.size()[1] - 1);
        match self.cfg.pool {
            Pool::Cls => t.select(1, 0),
            Pool::Mean => patches.mean_dim([1i64].as_slice(), false, t.kind()),
            Pool::Stacked => {
                let (rows, cols) = self.cfg.grid_hw();
                let (_, m, d) = patches.size3().expect("tokens are [B, 1 + M, D]");
                assert_eq!(m, rows * cols, "stacked pooling needs every patch of the {rows} × {cols} grid");
                // -1 for the batch, so that a traced export takes any batch.
                patches
                    .view([-1, rows, cols, d])
                    .permute([0, 2, 1, 3])
                    .reshape([-1, cols, rows * d])
                    .mean_dim([1i64].as_slice(), false, t.kind())
            }
        }
    }
}

/// Splits images into flattened patches, channels last within a patch
/// (MAE's `patchify`).
///
/// # Shapes
/// `[B, C, H, W]` → `[B, N, p * p * C]`
pub fn patchify(x: &Tensor, p: i64) -> Tensor {
    let (b, c, h, w) = x.size4().expect("patchify needs [B, C, H, W]");
    let (gh, gw) = (h / p, w / p);
    x.reshape([b, c, gh, p, gw, p]).permute([0, 2, 4, 3, 5, 1]).reshape([b, gh * gw, p * p * c])
}

/// Per-sample random masking (MAE): keeps `round(N * (1 - ratio))` patches
/// chosen by sorting uniform noise. Returns the kept patches, the binary
/// mask (1 = removed) in the original order, and the indices that restore
/// the original order.
///
/// # Shapes
/// `x: [B, N, D]` → `([B, K, D], mask [B, N], ids_restore [B, N])`
pub fn random_masking(x: &Tensor, ratio: f64) -> (Tensor, Tensor, Tensor) {
    let (b, n, d) = x.size3().expect("random_masking needs [B, N, D]");
    let keep = ((n as f64) * (1.0 - ratio)).round().clamp(1.0, n as f64) as i64;
    let noise = Tensor::rand([b, n], (Kind::Float, x.device()));
    let ids_shuffle = noise.argsort(1, false);
    let ids_restore = ids_shuffle.argsort(1, false);
    let ids_keep = ids_shuffle.narrow(1, 0, keep);
    let kept = x.gather(1, &ids_keep.unsqueeze(-1).expand([b, keep, d], false), false);
    let mask = Tensor::ones([b, n], (Kind::Float, x.device()));
    let _ = mask.narrow(1, 0, keep).fill_(0.0);
    let mask = mask.gather(1, &ids_restore, false);
    (kept, mask, ids_restore)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn shapes_and_names_follow_timm() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = VitConfig {
            image_size: 8,
            patch_size: 4,
            in_channels: 1,
            dim: 12,
            depth: 2,
            heads: 3,
            mlp_ratio: 4.0,
            fixed_pos_embed: true,
            pool: Pool::Cls,
            drop_path_rate: 0.0,
            image_width: None,
        };
        let vit = Vit::new(&vs.root(), &cfg);
        let vars = vs.variables();
        assert_eq!(vars["pos_embed"].size(), [1, 5, 12]);
        assert!(!vars["pos_embed"].requires_grad(), "fixed position embeddings are not trained");
        assert!(vars.contains_key("patch_embed.proj.weight") && vars.contains_key("blocks.1.mlp.fc1.bias"));
        let x = Tensor::randn([3, 1, 8, 8], (Kind::Float, Device::Cpu));
        assert_eq!(vit.forward_tokens(&x).size(), [3, 5, 12]);
        assert_eq!(vit.forward_t(&x, false).size(), [3, 12]);
    }

    #[test]
    fn rectangular_inputs_and_mean_pooling() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = VitConfig::mini(8, 4).with_in_channels(1).with_input(8, 16).with_pool(Pool::Mean);
        assert_eq!(cfg.grid_hw(), (2, 4));
        let vit = Vit::new(&vs.root(), &cfg);
        assert_eq!(vs.variables()["pos_embed"].size(), [1, 9, 96]);
        let x = Tensor::randn([2, 1, 8, 16], (Kind::Float, Device::Cpu));
        let tokens = vit.forward_tokens(&x);
        assert_eq!(tokens.size(), [2, 9, 96]);
        let mean = tokens.narrow(1, 1, 8).mean_dim([1i64].as_slice(), false, Kind::Float);
        assert!(vit.forward_t(&x, false).allclose(&mean, 1e-6, 1e-6, false));
        // Same config through serde, and old configs (no width, no pool) still load.
        let old: VitConfig = serde_json::from_str(
            r#"{"image_size":8,"patch_size":4,"in_channels":1,"dim":12,"depth":1,"heads":3,"mlp_ratio":4.0,"fixed_pos_embed":true}"#,
        )
        .unwrap();
        assert_eq!((old.width(), old.pool), (8, Pool::Cls));
    }

    #[test]
    fn stacked_pooling_concatenates_each_column_over_rows_then_averages_columns() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = VitConfig::mini(8, 4).with_in_channels(1).with_input(8, 16).with_pool(Pool::Stacked);
        assert_eq!((cfg.grid_hw(), cfg.feature_dim()), ((2, 4), 2 * 96));
        let vit = Vit::new(&vs.root(), &cfg);
        assert_eq!(vit.feature_dim(), 192);
        // Tokens numbered by position: row r, column c is patch 1 + 4r + c,
        // and token k holds the value k in every channel.
        let t = Tensor::arange(9, (Kind::Float, Device::Cpu)).view([1, 9, 1]).expand([1, 9, 96], false);
        let pooled = vit.pool_tokens(&t);
        assert_eq!(pooled.size(), [1, 192]);
        // Row 0's slot averages tokens 1..=4 (2.5), row 1's tokens 5..=8 (6.5).
        let v = Vec::<f32>::try_from(pooled.get(0)).unwrap();
        assert!(v[..96].iter().all(|&x| x == 2.5) && v[96..].iter().all(|&x| x == 6.5), "{v:?}");
        let x = Tensor::randn([2, 1, 8, 16], (Kind::Float, Device::Cpu));
        assert_eq!(vit.forward_t(&x, false).size(), [2, 192]);
    }

    #[test]
    fn patchify_orders_pixels_like_mae() {
        let x = Tensor::arange(2 * 4 * 4, (Kind::Float, Device::Cpu)).reshape([1, 2, 4, 4]);
        let p = patchify(&x, 2);
        assert_eq!(p.size(), [1, 4, 8]);
        // First patch: pixels (0,0),(0,1),(1,0),(1,1), channels interleaved.
        let first = Vec::<f32>::try_from(p.get(0).get(0)).unwrap();
        assert_eq!(first, vec![0.0, 16.0, 1.0, 17.0, 4.0, 20.0, 5.0, 21.0]);
    }

    #[test]
    fn masking_keeps_a_quarter_and_restores_order() {
        tch::manual_seed(0);
        let x = Tensor::arange(2 * 8, (Kind::Float, Device::Cpu)).reshape([2, 8, 1]);
        let (kept, mask, ids_restore) = random_masking(&x, 0.75);
        assert_eq!(kept.size(), [2, 2, 1]);
        assert_eq!(mask.sum(Kind::Float).double_value(&[]), 12.0);
        // The kept tokens are exactly those the mask marks as kept.
        for b in 0..2 {
            let kept_vals: Vec<f32> = Vec::try_from(kept.get(b).flatten(0, -1)).unwrap();
            for v in kept_vals {
                let idx = v as i64 - b * 8;
                assert_eq!(mask.double_value(&[b, idx]), 0.0);
            }
        }
        assert_eq!(ids_restore.size(), [2, 8]);
    }
}

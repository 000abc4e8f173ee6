//! Shared network pieces: MLP projection and prediction heads (SimCLR,
//! MoCo v2/v3, BYOL, SimSiam, Barlow Twins and VICReg all use one),
//! BatchNorm with PyTorch's full set of state-dict keys (synchronised over
//! the ranks of a distributed run with [`set_sync_batch_norm`]), and the
//! pre-norm transformer block of ViT (Dosovitskiy et al.,
//! <https://arxiv.org/abs/2010.11929>) with timm's parameter names.

use std::sync::atomic::{AtomicBool, Ordering};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

/// `nn.BatchNorm1d`/`2d`'s state-dict keys include `num_batches_tracked`,
/// which tch's BatchNorm lacks; this registers it (an int64 scalar, not
/// trained and not updated: with a fixed momentum PyTorch does not read it
/// either) so that our safetensors files hold exactly PyTorch's keys.
fn track_batches(p: &nn::Path) {
    let _ = p.add("num_batches_tracked", Tensor::zeros([], (Kind::Int64, p.device())), false);
}

/// `nn.BatchNorm2d(c)` with PyTorch's state-dict keys.
pub fn batch_norm2d(p: nn::Path, c: i64, cfg: nn::BatchNormConfig) -> BatchNorm {
    track_batches(&p);
    BatchNorm { eps: cfg.eps, momentum: cfg.momentum, inner: nn::batch_norm2d(p, c, cfg) }
}

/// `nn.BatchNorm1d(c)` with PyTorch's state-dict keys.
pub fn batch_norm1d(p: nn::Path, c: i64, cfg: nn::BatchNormConfig) -> BatchNorm {
    track_batches(&p);
    BatchNorm { eps: cfg.eps, momentum: cfg.momentum, inner: nn::batch_norm1d(p, c, cfg) }
}

static SYNC_BATCH_NORM: AtomicBool = AtomicBool::new(false);

/// With `true`, every [`BatchNorm`] in training mode normalises with the
/// statistics of the whole global batch, all-reduced over the ranks of
/// `ssl_dist::world()` (PyTorch's `SyncBatchNorm`); the all-reduces are
/// differentiable, so the gradients are those of BatchNorm on the global
/// batch in one process. Without it (the default, as PyTorch DDP), each rank
/// normalises with its own part's statistics. One rank: no effect.
pub fn set_sync_batch_norm(on: bool) {
    SYNC_BATCH_NORM.store(on, Ordering::SeqCst);
}

/// Whether [`set_sync_batch_norm`] is on.
pub fn sync_batch_norm() -> bool {
    SYNC_BATCH_NORM.load(Ordering::SeqCst)
}

/// BatchNorm over dimension 1 (`[N, C]`, `[N, C, L]` or `[N, C, H, W]`):
/// tch's, or with [`set_sync_batch_norm`] on and several ranks, one whose
/// training statistics come from every rank. A failed all-reduce is kept
/// with `ssl_dist::defer_error` (a `forward` cannot return it) and the
/// trainer reports it after the step.
#[derive(Debug)]
pub struct BatchNorm {
    inner: nn::BatchNorm,
    eps: f64,
    momentum: f64,
}

impl BatchNorm {
    /// Training-mode BatchNorm with statistics summed over `group`'s ranks.
    fn synchronised(&self, xs: &Tensor, group: &ssl_dist::Group) -> ssl_dist::Result<Tensor> {
        let x = crate::amp::at_least_f32(xs);
        let c = x.size()[1];
        let dims: Vec<i64> = (0..x.dim() as i64).filter(|&d| d != 1).collect();
        let mut shape = vec![1i64; x.dim()];
        shape[1] = c;
        let count = Tensor::full([1], (x.numel() as i64 / c.max(1)) as f64, (x.kind(), x.device()));
        let sums = group.all_reduce_with_grad(&Tensor::cat(
            &[x.sum_dim_intlist(dims.as_slice(), false, x.kind()), count],
            0,
        ))?;
        let n = sums.narrow(0, c, 1);
        let mean = (sums.narrow(0, 0, c) / &n).view(shape.as_slice());
        let centred = &x - &mean;
        let sq = centred.square().sum_dim_intlist(dims.as_slice(), false, x.kind());
        let var = (group.all_reduce_with_grad(&sq)? / &n).view(shape.as_slice());
        let mut y = centred / (&var + self.eps).sqrt();
        if let (Some(w), Some(b)) = (&self.inner.ws, &self.inner.bs) {
            y = y * w.view(shape.as_slice()) + b.view(shape.as_slice());
        }
        tch::no_grad(|| {
            let m = self.momentum;
            let unbiased = &var.view([-1]) * (&n / (&n - 1.0).clamp_min(1.0));
            let mean = mean.view([-1]).to_kind(self.inner.running_mean.kind());
            let _ = self.inner.running_mean.shallow_clone().g_mul_scalar_(1.0 - m).g_add_(&(mean * m));
            let unbiased = unbiased.to_kind(self.inner.running_var.kind());
            let _ = self.inner.running_var.shallow_clone().g_mul_scalar_(1.0 - m).g_add_(&(unbiased * m));
        });
        Ok(y.to_kind(xs.kind()))
    }
}

impl ModuleT for BatchNorm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let group = ssl_dist::world();
        if train && group.is_distributed() && sync_batch_norm() {
            return match self.synchronised(xs, group) {
                Ok(y) => y,
                Err(e) => {
                    ssl_dist::defer_error(e);
                    xs.shallow_clone()
                }
            };
        }
        xs.apply_t(&self.inner, train)
    }
}

/// An MLP head: `Linear → [BatchNorm] → ReLU` (or GELU) for every hidden
/// layer, then a final `Linear` (optionally followed by an affine-free
/// BatchNorm, as SimSiam and MoCo v3 do).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MlpHeadConfig {
    /// Input, hidden…, output widths; at least two entries.
    pub dims: Vec<i64>,
    /// BatchNorm after each hidden linear layer.
    pub batch_norm: bool,
    /// BatchNorm (without affine) after the last layer.
    pub last_batch_norm: bool,
    /// The hidden layers' non-linearity.
    #[serde(default)]
    pub activation: Activation,
    /// Linear weights drawn from N(0, std²) and biases set to 0 (DINO's
    /// and timm's truncated-normal init, whose ±2 bounds are 100 std away);
    /// `None`: PyTorch's default (Kaiming-uniform).
    #[serde(default)]
    pub init_std: Option<f64>,
}

/// A hidden layer's non-linearity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `nn.ReLU`.
    #[default]
    Relu,
    /// `nn.GELU` (the exact, erf form).
    Gelu,
}

impl MlpHeadConfig {
    /// SimCLR's 2-layer projection head with BatchNorm (as lightly's
    /// `SimCLRProjectionHead`); also BYOL's projector and predictor.
    pub fn simclr(input: i64, hidden: i64, output: i64) -> Self {
        Self {
            dims: vec![input, hidden, output],
            batch_norm: true,
            last_batch_norm: false,
            activation: Activation::Relu,
            init_std: None,
        }
    }
    /// MoCo v2's head: `Linear → ReLU → Linear`, no BatchNorm.
    pub fn moco_v2(input: i64, hidden: i64, output: i64) -> Self {
        Self {
            dims: vec![input, hidden, output],
            batch_norm: false,
            last_batch_norm: false,
            activation: Activation::Relu,
            init_std: None,
        }
    }
    /// SimSiam's 3-layer projector, BatchNorm everywhere, the last without
    /// affine parameters.
    pub fn simsiam_projection(input: i64, hidden: i64, output: i64) -> Self {
        Self {
            dims: vec![input, hidden, hidden, output],
            batch_norm: true,
            last_batch_norm: true,
            activation: Activation::Relu,
            init_std: None,
        }
    }
    /// Barlow Twins' and VICReg's 3-layer expander (BatchNorm on the hidden
    /// layers only).
    pub fn expander(input: i64, hidden: i64, output: i64) -> Self {
        Self {
            dims: vec![input, hidden, hidden, output],
            batch_norm: true,
            last_batch_norm: false,
            activation: Activation::Relu,
            init_std: None,
        }
    }
}

/// See [`MlpHeadConfig`]. Parameter names follow an `nn.Sequential`:
/// `layers.0.weight`, `layers.1.running_mean`, …
#[derive(Debug)]
pub struct MlpHead {
    layers: Vec<Layer>,
}

#[derive(Debug)]
enum Layer {
    Linear(nn::Linear),
    Bn(BatchNorm),
    Act(Activation),
}

impl MlpHead {
    /// Builds the head under `p`.
    ///
    /// # Panics
    /// If `cfg.dims` has fewer than two entries.
    pub fn new(p: &nn::Path, cfg: &MlpHeadConfig) -> Self {
        assert!(cfg.dims.len() >= 2, "an MLP head needs input and output widths, got {:?}", cfg.dims);
        let p = p / "layers";
        let mut layers = Vec::new();
        let last = cfg.dims.len() - 2;
        for (i, w) in cfg.dims.windows(2).enumerate() {
            let hidden = i < last;
            let bias = !(cfg.batch_norm && hidden);
            let idx = layers.len();
            layers.push(Layer::Linear(nn::linear(
                &p / idx,
                w[0],
                w[1],
                match cfg.init_std {
                    Some(stdev) => nn::LinearConfig {
                        bias,
                        ws_init: nn::Init::Randn { mean: 0.0, stdev },
                        bs_init: Some(nn::Init::Const(0.0)),
                    },
                    None => nn::LinearConfig { bias, ..Default::default() },
                },
            )));
            if hidden {
                if cfg.batch_norm {
                    let idx = layers.len();
                    layers.push(Layer::Bn(batch_norm1d(&p / idx, w[1], Default::default())));
                }
                layers.push(Layer::Act(cfg.activation));
            } else if cfg.last_batch_norm {
                let idx = layers.len();
                let bn = nn::BatchNormConfig { affine: false, ..Default::default() };
                layers.push(Layer::Bn(batch_norm1d(&p / idx, w[1], bn)));
            }
        }
        Self { layers }
    }
}

impl ModuleT for MlpHead {
    /// # Shapes
    /// `[N, dims[0]]` → `[N, dims[last]]`
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.layers.iter().fold(xs.shallow_clone(), |x, l| match l {
            Layer::Linear(lin) => x.apply(lin),
            Layer::Bn(bn) => x.apply_t(bn, train),
            Layer::Act(Activation::Relu) => x.relu(),
            Layer::Act(Activation::Gelu) => x.gelu("none"),
        })
    }
}

/// DINO's projection head (Caron et al., "Emerging Properties in
/// Self-Supervised Vision Transformers", <https://arxiv.org/abs/2104.14294>;
/// lightly's `DINOProjectionHead`): a 3-layer GELU MLP down to a
/// bottleneck, L2 normalisation, then a weight-normalised linear layer
/// without bias onto `out` prototypes.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DinoHeadConfig {
    /// Backbone width.
    pub input: i64,
    /// MLP hidden width (2048 in the paper).
    pub hidden: i64,
    /// Bottleneck width (256).
    pub bottleneck: i64,
    /// Linear layers of the MLP (3; lightly's CIFAR-10 benchmark uses 2).
    pub layers: usize,
    /// Prototypes, the softmax's width (65536).
    pub out: i64,
    /// BatchNorm in the MLP (the paper: off for ViTs).
    pub batch_norm: bool,
    /// Fix the last layer's norms (`weight_g`) at 1, as the paper does for
    /// stability.
    pub norm_last_layer: bool,
}

/// See [`DinoHeadConfig`]. Variables: `layers.*` (an `nn.Sequential`, as
/// [`MlpHead`]), `last_layer.weight_g` `[out, 1]` and `last_layer.weight_v`
/// `[out, bottleneck]` (`torch.nn.utils.weight_norm`'s names).
#[derive(Debug)]
pub struct DinoHead {
    mlp: MlpHead,
    weight_g: Tensor,
    weight_v: Tensor,
}

impl DinoHead {
    /// Builds the head under `p`: MLP weights from N(0, 0.02²), biases 0;
    /// the last layer's directions PyTorch's default linear init, its norms 1.
    pub fn new(p: &nn::Path, cfg: &DinoHeadConfig) -> Self {
        let mlp = MlpHead::new(
            p,
            &MlpHeadConfig {
                dims: std::iter::once(cfg.input)
                    .chain(std::iter::repeat_n(cfg.hidden, cfg.layers.max(1) - 1))
                    .chain([cfg.bottleneck])
                    .collect(),
                batch_norm: cfg.batch_norm,
                last_batch_norm: false,
                activation: Activation::Gelu,
                init_std: Some(0.02),
            },
        );
        let last = p / "last_layer";
        let bound = 1.0 / (cfg.bottleneck as f64).sqrt();
        let weight_v =
            last.var("weight_v", &[cfg.out, cfg.bottleneck], nn::Init::Uniform { lo: -bound, up: bound });
        let weight_g = if cfg.norm_last_layer {
            last.ones_no_train("weight_g", &[cfg.out, 1])
        } else {
            last.var("weight_g", &[cfg.out, 1], nn::Init::Const(1.0))
        };
        Self { mlp, weight_g, weight_v }
    }

    /// The prototype scores of a batch. With `freeze_last_layer` the last
    /// layer gets zero gradients (the paper keeps it fixed during the first
    /// epoch); its output is the same.
    ///
    /// # Shapes
    /// `[N, input]` → `[N, out]`
    pub fn forward(&self, xs: &Tensor, train: bool, freeze_last_layer: bool) -> Tensor {
        let z = crate::losses::l2_normalize(&self.mlp.forward_t(xs, train));
        let (v, g) = if freeze_last_layer {
            // Zero, but defined, gradients: DDP's Reducer expects one for
            // every trained variable.
            (self.weight_v.detach() + &self.weight_v * 0.0, self.weight_g.detach() + &self.weight_g * 0.0)
        } else {
            (self.weight_v.shallow_clone(), self.weight_g.shallow_clone())
        };
        let w = &g * &v / v.norm_scalaropt_dim(2.0, [1i64].as_slice(), true);
        z.matmul(&w.tr())
    }
}

/// A transformer block's shape.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BlockConfig {
    /// Token width.
    pub dim: i64,
    /// Attention heads (`dim` must be divisible by it).
    pub heads: i64,
    /// MLP hidden width as a multiple of `dim` (4).
    pub mlp_ratio: f64,
    /// LayerNorm epsilon (timm: 1e-6).
    pub eps: f64,
}

/// Multi-head self-attention with a packed `qkv` projection (timm's
/// `Attention`: `qkv`, `proj`).
#[derive(Debug)]
pub struct Attention {
    qkv: nn::Linear,
    proj: nn::Linear,
    heads: i64,
}

impl Attention {
    /// Builds `p.qkv` and `p.proj`.
    pub fn new(p: &nn::Path, dim: i64, heads: i64) -> Self {
        assert!(heads > 0 && dim % heads == 0, "width {dim} is not divisible by {heads} heads");
        Self {
            qkv: nn::linear(p / "qkv", dim, 3 * dim, Default::default()),
            proj: nn::linear(p / "proj", dim, dim, Default::default()),
            heads,
        }
    }
}

impl Module for Attention {
    /// # Shapes
    /// `[B, N, D]` → `[B, N, D]`
    fn forward(&self, x: &Tensor) -> Tensor {
        let (_, n, d) = x.size3().expect("attention input must be [B, N, D]");
        let hd = d / self.heads;
        // [B, N, 3, H, hd] → [3, B, H, N, hd]
        let qkv = x.apply(&self.qkv).reshape([-1, n, 3, self.heads, hd]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<&Tensor>, 0.0, false, None, false);
        y.transpose(1, 2).reshape([-1, n, d]).apply(&self.proj)
    }
}

/// Pre-norm transformer block: `x + attn(norm1(x))`, then
/// `x + mlp(norm2(x))` with an exact-GELU MLP. Names: `norm1`, `attn.qkv`,
/// `attn.proj`, `norm2`, `mlp.fc1`, `mlp.fc2` (timm's `Block`). In training
/// each branch can be dropped per sample ([`drop_path`], stochastic depth;
/// off unless [`Block::with_drop_path`] sets a rate).
#[derive(Debug)]
pub struct Block {
    norm1: nn::LayerNorm,
    attn: Attention,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    drop_path: f64,
}

impl Block {
    /// Builds the block under `p`.
    pub fn new(p: &nn::Path, cfg: &BlockConfig) -> Self {
        let ln = nn::LayerNormConfig { eps: cfg.eps, ..Default::default() };
        let hidden = (cfg.dim as f64 * cfg.mlp_ratio) as i64;
        let mlp = p / "mlp";
        Self {
            norm1: nn::layer_norm(p / "norm1", vec![cfg.dim], ln),
            attn: Attention::new(&(p / "attn"), cfg.dim, cfg.heads),
            norm2: nn::layer_norm(p / "norm2", vec![cfg.dim], ln),
            fc1: nn::linear(&mlp / "fc1", cfg.dim, hidden, Default::default()),
            fc2: nn::linear(&mlp / "fc2", hidden, cfg.dim, Default::default()),
            drop_path: 0.0,
        }
    }

    /// The same block dropping each branch (attention, MLP) of a sample
    /// with probability `rate` in training (timm's `drop_path`).
    pub fn with_drop_path(self, rate: f64) -> Self {
        Self { drop_path: rate, ..self }
    }
}

impl ModuleT for Block {
    /// # Shapes
    /// `[B, N, D]` → `[B, N, D]`
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let a = x.apply(&self.norm1).apply(&self.attn);
        let x = x + drop_path(&a, self.drop_path, train);
        let h = x.apply(&self.norm2).apply(&self.fc1).gelu("none").apply(&self.fc2);
        &x + drop_path(&h, self.drop_path, train)
    }
}

/// Stochastic depth (Huang et al. 2016, <https://arxiv.org/abs/1603.09382>)
/// as timm's `drop_path`: in training each sample's `x` is zeroed with
/// probability `rate` and otherwise scaled by `1 / (1 - rate)`; the identity
/// at evaluation or at rate 0. The draws come from torch's generator, one
/// Bernoulli per sample, so a seeded run repeats them.
///
/// # Shapes
/// `[B, …]` → `[B, …]`
pub fn drop_path(x: &Tensor, rate: f64, train: bool) -> Tensor {
    if rate == 0.0 || !train {
        return x.shallow_clone();
    }
    let keep = 1.0 - rate;
    let mut shape = vec![1i64; x.dim()];
    shape[0] = x.size()[0];
    let mask = Tensor::empty(shape.as_slice(), (x.kind(), x.device())).bernoulli_float_(keep);
    if keep > 0.0 {
        x * (mask / keep)
    } else {
        x * mask
    }
}

/// Fixed 2-D sine-cosine position embeddings (MAE, MoCo v3) for a
/// `grid × grid` patch grid, with a leading zero row for the class token.
/// The first half of the width encodes the column (x), the second the row.
///
/// # Shapes
/// → `[1, grid * grid + 1, dim]`
pub fn sincos_pos_embed(dim: i64, grid: i64) -> Tensor {
    sincos_pos_embed_hw(dim, grid, grid)
}

/// [`sincos_pos_embed`] for a `rows × cols` grid (Audio-MAE's rectangular
/// spectrogram grids), rows in order.
///
/// # Shapes
/// → `[1, rows * cols + 1, dim]`
pub fn sincos_pos_embed_hw(dim: i64, rows: i64, cols: i64) -> Tensor {
    assert!(dim % 4 == 0, "sin-cos position embeddings need a width divisible by 4, got {dim}");
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter).map(|i| 1.0 / 10000f64.powf(i as f64 / quarter as f64)).collect();
    let mut data = vec![0f32; ((rows * cols + 1) * dim) as usize];
    for r in 0..rows {
        for c in 0..cols {
            let row = &mut data[((1 + r * cols + c) * dim) as usize..((2 + r * cols + c) * dim) as usize];
            for (half, pos) in [(0, c as f64), (1, r as f64)] {
                for (i, w) in omega.iter().enumerate() {
                    let base = (half * 2 * quarter) as usize;
                    row[base + i] = (pos * w).sin() as f32;
                    row[base + quarter as usize + i] = (pos * w).cos() as f32;
                }
            }
        }
    }
    Tensor::from_slice(&data).reshape([1, rows * cols + 1, dim])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn names_and_shapes_follow_a_sequential() {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = MlpHead::new(&(vs.root() / "head"), &MlpHeadConfig::simclr(8, 16, 4));
        let names: std::collections::BTreeSet<String> = vs.variables().into_keys().collect();
        assert!(names.contains("head.layers.0.weight"));
        assert!(!names.contains("head.layers.0.bias"));
        assert!(names.contains("head.layers.1.running_var"));
        assert!(names.contains("head.layers.3.bias"));
        assert!(names.contains("head.layers.1.num_batches_tracked"));
        let y = head.forward_t(&Tensor::randn([5, 8], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), [5, 4]);
    }

    #[test]
    fn block_keeps_shape_and_attention_mixes_tokens() {
        let vs = nn::VarStore::new(Device::Cpu);
        let block = Block::new(
            &(vs.root() / "blocks" / 0),
            &BlockConfig { dim: 12, heads: 3, mlp_ratio: 4.0, eps: 1e-6 },
        );
        let names: std::collections::BTreeSet<String> = vs.variables().into_keys().collect();
        for k in [
            "blocks.0.norm1.weight",
            "blocks.0.attn.qkv.weight",
            "blocks.0.attn.proj.bias",
            "blocks.0.mlp.fc2.weight",
        ] {
            assert!(names.contains(k), "missing {k}");
        }
        let x = Tensor::randn([2, 5, 12], (Kind::Float, Device::Cpu));
        let y = block.forward_t(&x, false);
        assert_eq!(y.size(), [2, 5, 12]);
        // Changing token 4 changes token 0's output: attention mixes tokens.
        let x2 = x.copy();
        let _ = x2.narrow(1, 4, 1).fill_(3.0);
        let diff =
            (block.forward_t(&x2, false).narrow(1, 0, 1) - y.narrow(1, 0, 1)).abs().max().double_value(&[]);
        assert!(diff > 1e-4);
    }

    #[test]
    fn sincos_embeddings_follow_mae() {
        let e = sincos_pos_embed(8, 2);
        assert_eq!(e.size(), [1, 5, 8]);
        // Class token row is zero; patch (r=1, c=0): x-half sin(0)=0, cos(0)=1.
        assert_eq!(e.get(0).get(0).abs().sum(Kind::Float).double_value(&[]), 0.0);
        let p = Vec::<f32>::try_from(e.get(0).get(3)).unwrap();
        assert_eq!(&p[..4], &[0.0, 0.0, 1.0, 1.0]);
        assert!((p[4] - 1f32.sin()).abs() < 1e-6 && (p[6] - 1f32.cos()).abs() < 1e-6);
        // 2 rows x 3 columns: patch 5 is row 1, column 2.
        let r = sincos_pos_embed_hw(8, 2, 3);
        assert_eq!(r.size(), [1, 7, 8]);
        let p = Vec::<f32>::try_from(r.get(0).get(6)).unwrap();
        assert!((p[0] - 2f32.sin()).abs() < 1e-6 && (p[4] - 1f32.sin()).abs() < 1e-6);
    }
}

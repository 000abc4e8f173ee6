//! Self-supervised losses. Each matches lightly's implementation (values and
//! gradients), checked by `tests/loss_parity.rs` against fixtures written by
//! `tools/golden/losses.py`.
//!
//! - NT-Xent: Chen et al., "A Simple Framework for Contrastive Learning of
//!   Visual Representations", <https://arxiv.org/abs/2002.05709>
//! - InfoNCE with a queue: He et al., "Momentum Contrast for Unsupervised
//!   Visual Representation Learning", <https://arxiv.org/abs/1911.05722>
//! - Negative cosine: Grill et al. (BYOL) <https://arxiv.org/abs/2006.07733>,
//!   Chen & He (SimSiam) <https://arxiv.org/abs/2011.10566>
//! - Barlow Twins: Zbontar et al., <https://arxiv.org/abs/2103.03230>
//! - VICReg: Bardes et al., <https://arxiv.org/abs/2105.04906>
//!
//! The `*_global` variants take a process group (`ssl_dist::world()` in
//! training) and compute the loss of the global batch: negatives gathered
//! from every rank (NT-Xent, in-batch InfoNCE), statistics all-reduced over
//! every rank (Barlow Twins, VICReg), through ssl-dist's differentiable
//! collectives, so that after DDP averages the parameter gradients they
//! equal those of the single-process loss on the whole batch (checked by
//! the 2-rank tests of each method). Every rank's batch must have the same
//! size (the trainer's parts do). With one rank they are the plain
//! functions.

use crate::amp::at_least_f32;
use crate::Result;
use ssl_dist::Group;
use tch::{Kind, Tensor};

/// Rows divided by their L2 norm (clamped at 1e-12, as `F.normalize`).
///
/// # Shapes
/// `x: [N, D]` → `[N, D]`
pub fn l2_normalize(x: &Tensor) -> Tensor {
    let norm = x.norm_scalaropt_dim(2.0, [1i64].as_slice(), true).clamp_min(1e-12);
    x / norm
}

/// Mean cross entropy of `logits` `[N, C]` against class indices `[N]`,
/// computed in the logits' own precision (tch's `cross_entropy_for_logits`
/// always goes through f32).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Tensor {
    let logits = at_least_f32(logits);
    logits.log_softmax(-1, logits.kind()).nll_loss(targets)
}

/// NT-Xent (normalised temperature-scaled cross entropy), symmetric over the
/// two views: for each of the `2N` embeddings, the positive is its other view
/// and the negatives are the other `2N - 2` embeddings. Mean over `2N`.
///
/// # Shapes
/// `z0, z1: [N, D]` → scalar
pub fn nt_xent(z0: &Tensor, z1: &Tensor, temperature: f64) -> Tensor {
    let (z0, z1) = (&at_least_f32(z0), &at_least_f32(z1));
    let n = z0.size()[0];
    let device = z0.device();
    let z = l2_normalize(&Tensor::cat(&[z0, z1], 0));
    let logits = z.matmul(&z.tr()) / temperature;
    let self_mask = Tensor::eye(2 * n, (Kind::Bool, device));
    let logits = logits.masked_fill(&self_mask, f64::NEG_INFINITY);
    let targets = Tensor::cat(
        &[Tensor::arange_start(n, 2 * n, (Kind::Int64, device)), Tensor::arange(n, (Kind::Int64, device))],
        0,
    );
    cross_entropy(&logits, &targets)
}

/// Every rank's `x` concatenated in rank order, differentiably when `x`
/// needs a gradient (so that each rank's loss reaches every rank's
/// embeddings), else without.
///
/// # Shapes
/// `[n, D]` → `[world * n, D]`
pub fn gather_for_loss(group: &Group, x: &Tensor) -> Result<Tensor> {
    Ok(if x.requires_grad() { group.all_gather_with_grad(x)? } else { group.all_gather(x)? })
}

/// NT-Xent over the global batch: the local rows (`[z0; z1]` of this rank)
/// against every rank's embeddings, as lightly's `gather_distributed`:
/// the positive of local row `i` sits at global column `rank * 2n + (i ± n)`
/// and its own column at `rank * 2n + i` is masked. Mean over the local
/// `2n` rows; DDP's average over the ranks makes it the global mean.
///
/// # Shapes
/// `z0, z1: [n, D]` → scalar
pub fn nt_xent_global(z0: &Tensor, z1: &Tensor, temperature: f64, group: &Group) -> Result<Tensor> {
    if !group.is_distributed() {
        return Ok(nt_xent(z0, z1, temperature));
    }
    let (z0, z1) = (&at_least_f32(z0), &at_least_f32(z1));
    let n = z0.size()[0];
    let device = z0.device();
    let z = l2_normalize(&Tensor::cat(&[z0, z1], 0));
    let all = gather_for_loss(group, &z)?;
    let offset = group.rank() as i64 * 2 * n;
    let logits = z.matmul(&all.tr()) / temperature;
    let self_mask = shifted_eye(2 * n, all.size()[0], offset, device);
    let logits = logits.masked_fill(&self_mask, f64::NEG_INFINITY);
    let targets = Tensor::cat(
        &[Tensor::arange_start(n, 2 * n, (Kind::Int64, device)), Tensor::arange(n, (Kind::Int64, device))],
        0,
    ) + offset;
    Ok(cross_entropy(&logits, &targets))
}

/// A `[rows, cols]` boolean matrix, true at `(i, offset + i)`.
fn shifted_eye(rows: i64, cols: i64, offset: i64, device: tch::Device) -> Tensor {
    let mask = Tensor::zeros([rows, cols], (Kind::Bool, device));
    mask.narrow(1, offset, rows).copy_(&Tensor::eye(rows, (Kind::Bool, device)));
    mask
}

/// InfoNCE against an external queue of negatives (MoCo): the positive of
/// `q[i]` is `k[i]`; the negatives are the rows of `queue`. `q` and `k` are
/// L2-normalised here; the queue holds keys that were normalised when they
/// were enqueued (as MoCo and lightly's memory bank store them), so it is
/// used as is. Cross entropy with target 0, mean over `N`. Callers pass `k`
/// from the momentum encoder, detached.
///
/// # Shapes
/// `q, k: [N, D]`, `queue: [K, D]` → scalar
pub fn info_nce_queue(q: &Tensor, k: &Tensor, queue: &Tensor, temperature: f64) -> Tensor {
    let queue = &at_least_f32(queue);
    let q = l2_normalize(&at_least_f32(q));
    let k = l2_normalize(&at_least_f32(k));
    let pos = (&q * &k).sum_dim_intlist([1i64].as_slice(), true, q.kind());
    let neg = q.matmul(&queue.tr());
    let logits = Tensor::cat(&[pos, neg], 1) / temperature;
    let targets = Tensor::zeros([q.size()[0]], (Kind::Int64, q.device()));
    cross_entropy(&logits, &targets)
}

/// In-batch InfoNCE (MoCo v3, Chen et al., <https://arxiv.org/abs/2104.02057>,
/// Algorithm 1): the positive of `q[i]` is `k[i]`, the negatives are the
/// other keys of the batch; `q` and `k` are L2-normalised here. Cross entropy,
/// mean over `N`, times `2T` as in the paper's pseudo-code.
///
/// # Shapes
/// `q, k: [N, D]` → scalar
pub fn info_nce_in_batch(q: &Tensor, k: &Tensor, temperature: f64) -> Tensor {
    let (q, k) = (&at_least_f32(q), &at_least_f32(k));
    let logits = l2_normalize(q).matmul(&l2_normalize(k).tr()) / temperature;
    let targets = Tensor::arange(q.size()[0], (Kind::Int64, q.device()));
    cross_entropy(&logits, &targets) * (2.0 * temperature)
}

/// In-batch InfoNCE over the global batch: local queries against every
/// rank's keys (gathered, differentiably when they need a gradient); the
/// positive of local query `i` is global key `rank * n + i`.
///
/// # Shapes
/// `q, k: [n, D]` → scalar
pub fn info_nce_in_batch_global(q: &Tensor, k: &Tensor, temperature: f64, group: &Group) -> Result<Tensor> {
    if !group.is_distributed() {
        return Ok(info_nce_in_batch(q, k, temperature));
    }
    let (q, k) = (&at_least_f32(q), &at_least_f32(k));
    let n = q.size()[0];
    let keys = gather_for_loss(group, &l2_normalize(k))?;
    let logits = l2_normalize(q).matmul(&keys.tr()) / temperature;
    let targets = Tensor::arange(n, (Kind::Int64, q.device())) + group.rank() as i64 * n;
    Ok(cross_entropy(&logits, &targets) * (2.0 * temperature))
}

/// Negative cosine similarity, mean over the batch (BYOL, SimSiam). Callers
/// detach the target branch themselves.
///
/// # Shapes
/// `p, z: [N, D]` → scalar
pub fn negative_cosine(p: &Tensor, z: &Tensor) -> Tensor {
    let (p, z) = (&at_least_f32(p), &at_least_f32(z));
    -Tensor::cosine_similarity(p, z, 1, 1e-8).mean(p.kind())
}

/// Each column standardised over the batch as `BatchNorm1d(affine=False)`
/// in training mode: biased variance, eps 1e-5 (lightly's Barlow Twins).
fn standardize(z: &Tensor) -> Tensor {
    let dim = [0i64];
    let mean = z.mean_dim(dim.as_slice(), true, z.kind());
    let var = z.var_dim(dim.as_slice(), false, true);
    (z - mean) / (var + 1e-5).sqrt()
}

/// Sum of squares of the off-diagonal entries of a square matrix.
fn off_diagonal_sq_sum(c: &Tensor) -> Tensor {
    let d = c.size()[0];
    let mask = Tensor::eye(d, (Kind::Bool, c.device())).logical_not();
    c.masked_select(&mask).square().sum(c.kind())
}

/// Barlow Twins: the cross-correlation matrix of the batch-normalised
/// embeddings is pushed towards the identity;
/// `sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2`.
///
/// # Shapes
/// `z0, z1: [N, D]` → scalar
pub fn barlow_twins(z0: &Tensor, z1: &Tensor, lambda: f64) -> Tensor {
    let (z0, z1) = (&at_least_f32(z0), &at_least_f32(z1));
    let n = z0.size()[0] as f64;
    let c = standardize(z0).tr().matmul(&standardize(z1)) / n;
    let on_diag = (c.diagonal(0, 0, 1) - 1.0).square().sum(c.kind());
    on_diag + off_diagonal_sq_sum(&c) * lambda
}

/// Column means and centred columns of `z` over the global batch of
/// `n_global` rows, the sums all-reduced (differentiably) over `group`.
fn centre_global(z: &Tensor, n_global: f64, group: &Group) -> Result<Tensor> {
    let sum = group.all_reduce_with_grad(&z.sum_dim_intlist([0i64].as_slice(), true, z.kind()))?;
    Ok(z - sum / n_global)
}

/// `standardize` over the global batch: each column's mean and biased
/// variance from every rank.
fn standardize_global(z: &Tensor, n_global: f64, group: &Group) -> Result<Tensor> {
    let zc = centre_global(z, n_global, group)?;
    let sq = group.all_reduce_with_grad(&zc.square().sum_dim_intlist([0i64].as_slice(), true, z.kind()))?;
    Ok(zc / (sq / n_global + 1e-5).sqrt())
}

/// Barlow Twins over the global batch, as the paper's implementation: the
/// embeddings standardised with every rank's statistics and the
/// cross-correlation matrix summed over the ranks, both by differentiable
/// all-reduces (the missing reduction or scaling is the bug of lightly
/// #1977). Every rank computes the same loss.
///
/// # Shapes
/// `z0, z1: [n, D]` → scalar
pub fn barlow_twins_global(z0: &Tensor, z1: &Tensor, lambda: f64, group: &Group) -> Result<Tensor> {
    if !group.is_distributed() {
        return Ok(barlow_twins(z0, z1, lambda));
    }
    let (z0, z1) = (&at_least_f32(z0), &at_least_f32(z1));
    let n = (z0.size()[0] * group.world_size() as i64) as f64;
    let local = standardize_global(z0, n, group)?.tr().matmul(&standardize_global(z1, n, group)?);
    let c = group.all_reduce_with_grad(&local)? / n;
    let on_diag = (c.diagonal(0, 0, 1) - 1.0).square().sum(c.kind());
    Ok(on_diag + off_diagonal_sq_sum(&c) * lambda)
}

/// VICReg's three terms, returned separately so runs can log them.
pub struct VicRegTerms {
    /// Mean squared error between the two views.
    pub invariance: Tensor,
    /// Hinge on the per-dimension std (mean of both views).
    pub variance: Tensor,
    /// Off-diagonal covariance (sum of both views).
    pub covariance: Tensor,
}

/// Hinge on each dimension's std: `mean(relu(1 - sqrt(var + eps)))`.
fn variance_term(x: &Tensor, eps: f64) -> Tensor {
    let std = (x.var_dim([0i64].as_slice(), true, false) + eps).sqrt();
    (-std + 1.0).relu().mean(x.kind())
}

/// Off-diagonal squared covariance, summed, divided by `D`.
fn covariance_term(x: &Tensor) -> Tensor {
    let (n, d) = (x.size()[0] as f64, x.size()[1] as f64);
    let xc = x - x.mean_dim([0i64].as_slice(), true, x.kind());
    let cov = xc.tr().matmul(&xc) / (n - 1.0);
    off_diagonal_sq_sum(&cov) / d
}

/// VICReg's terms (invariance, variance, covariance) for two views.
///
/// # Shapes
/// `z0, z1: [N, D]` → three scalars
pub fn vicreg_terms(z0: &Tensor, z1: &Tensor, eps: f64) -> VicRegTerms {
    let (z0, z1) = (&at_least_f32(z0), &at_least_f32(z1));
    VicRegTerms {
        invariance: z0.mse_loss(z1, tch::Reduction::Mean),
        variance: (variance_term(z0, eps) + variance_term(z1, eps)) * 0.5,
        covariance: covariance_term(z0) + covariance_term(z1),
    }
}

/// [`vicreg_terms`] over the global batch: the variance and covariance
/// from every rank's embeddings (differentiable all-reduces of the column
/// sums, the squared deviations and the covariance matrix), the invariance
/// term this rank's mean (DDP's average makes it the global mean). The
/// variance and covariance terms are the same on every rank.
///
/// # Shapes
/// `z0, z1: [n, D]` → three scalars
pub fn vicreg_terms_global(z0: &Tensor, z1: &Tensor, eps: f64, group: &Group) -> Result<VicRegTerms> {
    if !group.is_distributed() {
        return Ok(vicreg_terms(z0, z1, eps));
    }
    let (z0, z1) = (&at_least_f32(z0), &at_least_f32(z1));
    let n = (z0.size()[0] * group.world_size() as i64) as f64;
    let terms = |x: &Tensor| -> Result<(Tensor, Tensor)> {
        let d = x.size()[1] as f64;
        let xc = centre_global(x, n, group)?;
        let sq =
            group.all_reduce_with_grad(&xc.square().sum_dim_intlist([0i64].as_slice(), false, x.kind()))?;
        let std = (sq / (n - 1.0) + eps).sqrt();
        let variance = (-std + 1.0).relu().mean(x.kind());
        let cov = group.all_reduce_with_grad(&xc.tr().matmul(&xc))? / (n - 1.0);
        Ok((variance, off_diagonal_sq_sum(&cov) / d))
    };
    let ((v0, c0), (v1, c1)) = (terms(z0)?, terms(z1)?);
    Ok(VicRegTerms {
        invariance: z0.mse_loss(z1, tch::Reduction::Mean),
        variance: (v0 + v1) * 0.5,
        covariance: c0 + c1,
    })
}

/// VICReg: `lambda * invariance + mu * variance + nu * covariance`, with
/// lightly's defaults `lambda = 25, mu = 25, nu = 1, eps = 1e-4`.
///
/// # Shapes
/// `z0, z1: [N, D]` → scalar
pub fn vicreg(z0: &Tensor, z1: &Tensor, lambda: f64, mu: f64, nu: f64, eps: f64) -> Tensor {
    let t = vicreg_terms(z0, z1, eps);
    t.invariance * lambda + t.variance * mu + t.covariance * nu
}

/// DINO's self-distillation loss (Caron et al., "Emerging Properties in
/// Self-Supervised Vision Transformers", <https://arxiv.org/abs/2104.14294>),
/// as lightly's `DINOLoss`: for every teacher view `t` and student view `s`
/// with `t != s` (the first views of the student are the teacher's global
/// crops), the cross entropy between `softmax((teacher_t - center) /
/// teacher_temp)` and `log_softmax(student_s / student_temp)`, averaged over
/// the pairs and the samples. In f32 at least, as the paper does.
///
/// # Shapes
/// `teacher: T × [B, K]`, `student: S × [B, K]`, `center: [1, K]` → scalar
pub fn dino(
    teacher: &[Tensor],
    student: &[Tensor],
    center: &Tensor,
    teacher_temp: f64,
    student_temp: f64,
) -> Tensor {
    let t = at_least_f32(&Tensor::stack(teacher, 0));
    let s = at_least_f32(&Tensor::stack(student, 0));
    let (nt, ns, b) = (t.size()[0], s.size()[0], t.size()[1]);
    let t_out = ((&t - center.to_kind(t.kind())) / teacher_temp).softmax(-1, t.kind());
    let s_out = (s / student_temp).log_softmax(-1, t_out.kind());
    let pairs = -Tensor::einsum("tbk,sbk->ts", &[t_out, s_out], None::<&[i64]>);
    // The same view seen by both networks is not a pair.
    let same = Tensor::eye_m(nt, ns, (Kind::Bool, pairs.device()));
    let terms = nt * ns - nt.min(ns);
    pairs.masked_fill(&same, 0.0).sum(pairs.kind()) / (terms * b) as f64
}

/// DINO's teacher temperature at `epoch`: linear from `warmup` to `temp`
/// over the first `warmup_epochs` epochs (reaching `temp` at the last of
/// them), then `temp`, as lightly's `DINOLoss` schedule.
pub fn dino_teacher_temp(warmup: f64, temp: f64, warmup_epochs: usize, epoch: usize) -> f64 {
    match warmup_epochs {
        n if epoch >= n => temp,
        1 => warmup,
        n => warmup + (temp - warmup) * epoch as f64 / (n - 1) as f64,
    }
}

/// DINO's centre update: `center · momentum + mean · (1 - momentum)`, the
/// mean of the teacher's outputs over its views, the samples and every rank
/// of `group` (so every rank holds the same centre). Without gradient.
///
/// # Shapes
/// `center: [1, K]`, `teacher: T × [B, K]` → `[1, K]`
pub fn dino_center(center: &Tensor, teacher: &[Tensor], momentum: f64, group: &Group) -> Result<Tensor> {
    let t = at_least_f32(&Tensor::stack(teacher, 0).detach());
    let k = t.size()[2];
    let mean = t.reshape([-1, k]).mean_dim([0i64].as_slice(), true, t.kind());
    let mean = group.all_reduce_sum(&mean)? / group.world_size() as f64;
    Ok(center * momentum + mean.to_kind(center.kind()) * (1.0 - momentum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nt_xent_is_low_for_matching_views_and_high_for_shuffled() {
        tch::manual_seed(0);
        let z = Tensor::randn([32, 16], (Kind::Float, tch::Device::Cpu));
        let same = nt_xent(&z, &z, 0.1).double_value(&[]);
        let perm = Tensor::randperm(32, (Kind::Int64, tch::Device::Cpu));
        let shuffled = nt_xent(&z, &z.index_select(0, &perm), 0.1).double_value(&[]);
        assert!(same < 0.5, "{same}");
        assert!(shuffled > same + 2.0, "{shuffled} vs {same}");
    }

    #[test]
    fn barlow_twins_rewards_invariance_and_decorrelation() {
        tch::manual_seed(1);
        let z = Tensor::randn([256, 8], (Kind::Double, tch::Device::Cpu));
        let other = Tensor::randn([256, 8], (Kind::Double, tch::Device::Cpu));
        // Identical views: every C_ii is var / (var + eps), almost 1.
        assert!(barlow_twins(&z, &z, 0.0).double_value(&[]) < 1e-6);
        // Independent views: C_ii near 0, so the invariance term is near D.
        let indep = barlow_twins(&z, &other, 0.0).double_value(&[]);
        assert!(indep > 6.0, "{indep}");
        // Correlated columns add to the redundancy term.
        let dup = Tensor::cat(&[z.narrow(1, 0, 4), z.narrow(1, 0, 4)], 1);
        let redundant = barlow_twins(&dup, &dup, 1.0).double_value(&[]);
        assert!(redundant > 7.0, "{redundant}"); // 8 off-diagonal ones
    }

    #[test]
    fn half_precision_inputs_get_f32_losses() {
        tch::manual_seed(2);
        let a = Tensor::randn([16, 8], (Kind::Float, tch::Device::Cpu));
        let b = &a + Tensor::randn([16, 8], (Kind::Float, tch::Device::Cpu)) * 0.5;
        let (ah, bh) = (a.to_kind(Kind::BFloat16), b.to_kind(Kind::BFloat16));
        // The same values, rounded to bf16, then computed in f32.
        let (ar, br) = (ah.to_kind(Kind::Float), bh.to_kind(Kind::Float));
        let cases: Vec<(&str, Tensor, Tensor)> = vec![
            ("nt_xent", nt_xent(&ah, &bh, 0.2), nt_xent(&ar, &br, 0.2)),
            ("in_batch", info_nce_in_batch(&ah, &bh, 0.2), info_nce_in_batch(&ar, &br, 0.2)),
            (
                "queue",
                info_nce_queue(&ah, &bh, &l2_normalize(&ar), 0.2),
                info_nce_queue(&ar, &br, &l2_normalize(&ar), 0.2),
            ),
            ("negcos", negative_cosine(&ah, &bh), negative_cosine(&ar, &br)),
            ("barlow", barlow_twins(&ah, &bh, 5e-3), barlow_twins(&ar, &br, 5e-3)),
            ("vicreg", vicreg(&ah, &bh, 25.0, 25.0, 1.0, 1e-4), vicreg(&ar, &br, 25.0, 25.0, 1.0, 1e-4)),
        ];
        for (name, half, full) in cases {
            assert_eq!(half.kind(), Kind::Float, "{name}");
            assert_eq!(half.double_value(&[]), full.double_value(&[]), "{name}");
        }
    }

    #[test]
    fn vicreg_variance_term_penalises_collapse() {
        let collapsed = Tensor::zeros([16, 4], (Kind::Double, tch::Device::Cpu));
        let t = vicreg_terms(&collapsed, &collapsed, 1e-4);
        assert!((t.variance.double_value(&[]) - (1.0 - 1e-2)).abs() < 1e-9);
        assert_eq!(t.invariance.double_value(&[]), 0.0);
    }
}

//! Evaluation of frozen representations: feature extraction, weighted kNN
//! (Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance
//! Discrimination", <https://arxiv.org/abs/1805.01978>; k = 200 (at most the
//! training samples per class), T = 0.1 as
//! lightly's benchmarks) and a linear probe trained to convergence.

use crate::losses::l2_normalize;
use crate::optim::{Optimizer, OptimizerConfig};
use crate::{Error, Result};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// Evaluation inputs that can be read a chunk at a time: a tensor already in
/// memory, or a data set decoded on demand (a streamed image folder), so
/// that feature extraction never needs the whole set at once.
pub trait InputChunks {
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Samples `start..start + n` as one tensor `[n, ...]`.
    fn chunk(&self, start: usize, n: usize) -> Result<Tensor>;
}

impl InputChunks for Tensor {
    fn len(&self) -> usize {
        self.size().first().map_or(0, |&n| n as usize)
    }
    fn chunk(&self, start: usize, n: usize) -> Result<Tensor> {
        Ok(self.narrow(0, start as i64, n as i64))
    }
}

/// Runs `features` over `inputs` in chunks of `batch_size` without grad and
/// gathers the result on the CPU as f32.
///
/// # Shapes
/// `inputs: [N, ...]` → `[N, F]`
pub fn extract_features(
    features: &dyn Fn(&Tensor) -> Tensor,
    inputs: &Tensor,
    batch_size: usize,
    device: Device,
) -> Tensor {
    extract_features_from(features, inputs, batch_size, device).expect("reading a tensor's rows cannot fail")
}

/// [`extract_features`] over any [`InputChunks`]; fails when a chunk cannot
/// be read (e.g. a corrupt file in a streamed folder).
pub fn extract_features_from(
    features: &dyn Fn(&Tensor) -> Tensor,
    inputs: &dyn InputChunks,
    batch_size: usize,
    device: Device,
) -> Result<Tensor> {
    let n = inputs.len();
    let bs = batch_size.max(1);
    tch::no_grad(|| {
        let chunks: Vec<Tensor> = (0..n)
            .step_by(bs)
            .map(|s| {
                let x = inputs.chunk(s, bs.min(n - s))?.to_device(device);
                Ok(features(&x).to_kind(Kind::Float).to_device(Device::Cpu))
            })
            .collect::<Result<_>>()?;
        if chunks.is_empty() {
            // No samples: `[0, 0]`, which the evaluations refuse by shape.
            return Ok(Tensor::zeros([0, 0], (Kind::Float, Device::Cpu)));
        }
        Ok(Tensor::cat(&chunks, 0))
    })
}

fn check(train_f: &Tensor, train_y: &Tensor, test_f: &Tensor, test_y: &Tensor) -> Result<()> {
    let (a, b) = (train_f.size(), test_f.size());
    if a.len() != 2 || b.len() != 2 || a[1] != b[1] {
        return Err(Error::Shape(format!(
            "features must be [N, F] with the same F: train {a:?}, test {b:?}"
        )));
    }
    if train_y.size() != [a[0]] || test_y.size() != [b[0]] {
        return Err(Error::Shape(format!(
            "labels must be [N]: train {:?} for {} rows, test {:?} for {} rows",
            train_y.size(),
            a[0],
            test_y.size(),
            b[0]
        )));
    }
    if a[0] == 0 || b[0] == 0 {
        return Err(Error::Shape("empty train or test features".into()));
    }
    Ok(())
}

/// The `k` of the kNN evaluations: 200 (lightly's and solo-learn's
/// benchmarks), but never more than the training samples per class. On a
/// small set (the bundled keywords have 40 per class) 200 neighbours would
/// be half of the set, and the vote would mostly count class frequencies.
pub fn knn_k(train_samples: usize, num_classes: usize) -> usize {
    (train_samples / num_classes.max(1)).clamp(1, 200)
}

/// Weighted kNN top-1: cosine similarity to the `k` nearest training
/// features, each voting for its class with weight `exp(sim / t)`.
///
/// # Shapes
/// `train_f: [N, F]`, `train_y: [N]`, `test_f: [M, F]`, `test_y: [M]`
pub fn knn_top1(
    train_f: &Tensor,
    train_y: &Tensor,
    test_f: &Tensor,
    test_y: &Tensor,
    k: usize,
    t: f64,
    num_classes: usize,
) -> Result<f64> {
    check(train_f, train_y, test_f, test_y)?;
    let k = (k as i64).min(train_f.size()[0]);
    let train = l2_normalize(&train_f.to_kind(Kind::Float));
    let test = l2_normalize(&test_f.to_kind(Kind::Float));
    let train_y = train_y.to_kind(Kind::Int64);
    let m = test.size()[0];
    let mut correct = 0i64;
    tch::no_grad(|| {
        for s in (0..m).step_by(512) {
            let len = 512.min(m - s);
            let sim = test.narrow(0, s, len).matmul(&train.tr());
            let (vals, idx) = sim.topk(k, 1, true, true);
            let labels = train_y.index_select(0, &idx.reshape([-1])).reshape([len, k]);
            let weights = (vals / t).exp();
            let votes = Tensor::zeros([len, num_classes as i64], (Kind::Float, Device::Cpu))
                .scatter_add(1, &labels, &weights);
            let pred = votes.argmax(1, false);
            correct += pred
                .eq_tensor(&test_y.narrow(0, s, len).to_kind(Kind::Int64))
                .sum(Kind::Int64)
                .int64_value(&[]);
        }
    });
    Ok(correct as f64 / m as f64)
}

/// How the linear probe trains.
#[derive(Clone, Debug, Serialize)]
pub struct LinearProbeConfig {
    /// Full-batch AdamW steps at most.
    pub max_steps: usize,
    /// Learning rate.
    pub lr: f64,
    /// Weight decay on the weights.
    pub weight_decay: f64,
    /// Stop when the training loss improves by less than this (relative)
    /// over `patience` steps.
    pub tol: f64,
    /// See `tol`.
    pub patience: usize,
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        Self { max_steps: 3000, lr: 0.01, weight_decay: 1e-4, tol: 1e-4, patience: 50 }
    }
}

/// What the linear probe reports.
#[derive(Clone, Debug, Serialize)]
pub struct LinearProbeResult {
    /// Top-1 on the held-out split.
    pub test_top1: f64,
    /// Macro-averaged F1 on the held-out split (see [`macro_f1`]).
    pub test_macro_f1: f64,
    /// Top-1 on the training split.
    pub train_top1: f64,
    /// Final training loss.
    pub train_loss: f64,
    /// Steps until convergence.
    pub steps: usize,
}

/// A trained linear probe: `(x - mean) / std` then `weight`, `bias`; e.g.
/// to start fine-tuning from (LP-FT: Kumar et al. 2022,
/// <https://arxiv.org/abs/2202.10054>).
///
/// # Shapes
/// `weight: [K, F]`, `bias: [K]`, `mean, std: [1, F]` (on the CPU)
pub struct LinearHead {
    /// Classifier weights.
    pub weight: Tensor,
    /// Classifier bias.
    pub bias: Tensor,
    /// The training features' mean.
    pub mean: Tensor,
    /// The training features' standard deviation (plus 1e-6).
    pub std: Tensor,
}

/// A linear classifier on frozen features (standardised with the training
/// split's mean and std), trained full-batch with AdamW until the loss stops
/// improving, then scored on the held-out split. Also returns the trained
/// classifier.
///
/// # Shapes
/// `train_f: [N, F]`, `train_y: [N]`, `test_f: [M, F]`, `test_y: [M]`
pub fn linear_probe(
    train_f: &Tensor,
    train_y: &Tensor,
    test_f: &Tensor,
    test_y: &Tensor,
    num_classes: usize,
    cfg: &LinearProbeConfig,
) -> Result<(LinearProbeResult, LinearHead)> {
    check(train_f, train_y, test_f, test_y)?;
    let x = train_f.to_kind(Kind::Float);
    let mean = x.mean_dim([0i64].as_slice(), true, Kind::Float);
    let std = x.std_dim([0i64].as_slice(), false, true) + 1e-6;
    let x = (x - &mean) / &std;
    let xt = (test_f.to_kind(Kind::Float) - &mean) / &std;
    let (y, yt) = (train_y.to_kind(Kind::Int64), test_y.to_kind(Kind::Int64));
    let f = x.size()[1];
    let opts = (Kind::Float, Device::Cpu);
    // Zeros: the problem is convex, and nothing is drawn from the global
    // generator (so the result does not depend on what ran before).
    let w = Tensor::zeros([num_classes as i64, f], opts).set_requires_grad(true);
    let b = Tensor::zeros([num_classes as i64], opts).set_requires_grad(true);
    let mut opt = Optimizer::new(
        &OptimizerConfig::adamw(cfg.lr, cfg.weight_decay),
        vec![("weight".into(), w.shallow_clone()), ("bias".into(), b.shallow_clone())],
    );
    let mut history: Vec<f64> = Vec::new();
    let mut steps = 0;
    for step in 0..cfg.max_steps {
        opt.zero_grad();
        let loss = x.linear(&w, Some(&b)).cross_entropy_for_logits(&y);
        loss.backward();
        opt.step(cfg.lr);
        steps = step + 1;
        history.push(loss.double_value(&[]));
        if history.len() > cfg.patience {
            let old = history[history.len() - 1 - cfg.patience];
            let new = history[history.len() - 1];
            if (old - new) / old.abs().max(1e-12) < cfg.tol {
                break;
            }
        }
    }
    let acc = |inp: &Tensor, lab: &Tensor| {
        tch::no_grad(|| {
            inp.linear(&w, Some(&b)).argmax(1, false).eq_tensor(lab).to_kind(Kind::Float).mean(Kind::Float)
        })
        .double_value(&[])
    };
    let test_pred = tch::no_grad(|| xt.linear(&w, Some(&b)).argmax(1, false));
    let result = LinearProbeResult {
        test_macro_f1: macro_f1(&test_pred, &yt, num_classes),
        test_top1: acc(&xt, &yt),
        train_top1: acc(&x, &y),
        train_loss: history.last().copied().unwrap_or(f64::NAN),
        steps,
    };
    Ok((result, LinearHead { weight: w.detach(), bias: b.detach(), mean, std }))
}

/// Macro-averaged F1 of predictions against labels, as scikit-learn's
/// `f1_score(average="macro")`: the unweighted mean of the per-class F1 over
/// the classes that occur in either, a class with no true positive scoring 0.
///
/// # Shapes
/// `pred, labels: [N]` (class indices below `num_classes`)
pub fn macro_f1(pred: &Tensor, labels: &Tensor, num_classes: usize) -> f64 {
    let p: Vec<i64> = Vec::try_from(pred.to_kind(Kind::Int64).to_device(Device::Cpu)).unwrap_or_default();
    let y: Vec<i64> = Vec::try_from(labels.to_kind(Kind::Int64).to_device(Device::Cpu)).unwrap_or_default();
    let (mut tp, mut fp, mut fnn) =
        (vec![0f64; num_classes], vec![0f64; num_classes], vec![0f64; num_classes]);
    for (&a, &b) in p.iter().zip(&y) {
        let (a, b) = (a as usize, b as usize);
        if a >= num_classes || b >= num_classes {
            continue;
        }
        if a == b {
            tp[a] += 1.0;
        } else {
            fp[a] += 1.0;
            fnn[b] += 1.0;
        }
    }
    let f1s: Vec<f64> = (0..num_classes)
        .filter(|&c| tp[c] + fp[c] + fnn[c] > 0.0)
        .map(|c| if tp[c] == 0.0 { 0.0 } else { 2.0 * tp[c] / (2.0 * tp[c] + fp[c] + fnn[c]) })
        .collect();
    if f1s.is_empty() {
        0.0
    } else {
        f1s.iter().sum::<f64>() / f1s.len() as f64
    }
}

/// The first two principal components of `features` (centred; via SVD).
///
/// # Shapes
/// `[N, F]` → `[N, 2]`
pub fn pca_2d(features: &Tensor) -> Tensor {
    let x = features.to_kind(Kind::Float);
    let x = &x - x.mean_dim([0i64].as_slice(), true, Kind::Float);
    // torch.svd: v is [F, k], right singular vectors as columns.
    let (_, _, v) = x.svd(true, true);
    x.matmul(&v.narrow(1, 0, 2.min(v.size()[1])))
}

/// The report fields of a pretrained encoder against the same architecture
/// at random initialisation, as every vision and audio `report.json` holds
/// them: `ssl` and `random_init` ([`EvalReport::summary`]), `feature_dim`,
/// and each side's `linear_probe` and `label_efficiency` in full.
pub fn comparison_json(ssl: &EvalReport, random_init: &EvalReport) -> serde_json::Value {
    serde_json::json!({
        "ssl": ssl.summary(),
        "random_init": random_init.summary(),
        "feature_dim": ssl.feature_dim,
        "linear_probe": {"ssl": ssl.linear, "random_init": random_init.linear},
        "label_efficiency": {"ssl": ssl.label_efficiency, "random_init": random_init.label_efficiency},
    })
}

/// What [`evaluate_encoder`] measured of an encoder's frozen features.
pub struct Evaluated {
    /// kNN, linear probe and label-efficiency probes.
    pub report: EvalReport,
    /// The test features' first two principal components, by class.
    pub scatter: crate::plots::Scatter,
    /// The training features `[N, F]`.
    pub train: Tensor,
    /// The test features `[M, F]`.
    pub test: Tensor,
}

impl Evaluated {
    /// The report and the plot, dropping the features (which can be large).
    pub fn into_parts(self) -> (EvalReport, crate::plots::Scatter) {
        (self.report, self.scatter)
    }
}

/// [`evaluate_features`] on an encoder's frozen training and test
/// features, and their embedding plot: the test features' first two
/// principal components coloured by class (`classes`, by label), titled
/// `title`, also written as a PNG to `plot`.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_encoder(
    train: Tensor,
    train_y: &Tensor,
    test: Tensor,
    test_y: &Tensor,
    classes: &[String],
    seed: u64,
    title: &str,
    plot: &std::path::Path,
) -> Result<Evaluated> {
    let scatter = crate::plots::Scatter::from_tensors(title, &pca_2d(&test), test_y, classes)?;
    crate::plots::scatter_png(plot, &scatter)?;
    let report = evaluate_features(&train, train_y, &test, test_y, classes.len(), seed)?;
    Ok(Evaluated { report, scatter, train, test })
}

/// Weighted kNN top-1 of a method's features between epochs (the kNN
/// monitor of lightly and solo-learn), on preprocessed inputs.
pub struct KnnMonitor<'a> {
    /// Training inputs `[N, ...]` (kept on the CPU, or decoded on demand;
    /// moved in chunks).
    pub train_x: &'a dyn InputChunks,
    /// Training labels `[N]`.
    pub train_y: Tensor,
    /// Test inputs `[M, ...]`.
    pub test_x: &'a dyn InputChunks,
    /// Test labels `[M]`.
    pub test_y: Tensor,
    /// Number of classes.
    pub num_classes: usize,
    /// Where features are computed.
    pub device: Device,
}

impl crate::trainer::EpochMonitor for KnnMonitor<'_> {
    fn evaluate(&self, method: &dyn crate::Method) -> Result<Vec<(&'static str, f64)>> {
        let f = |x: &Tensor| method.features(x);
        let tr = extract_features_from(&f, self.train_x, 512, self.device)?;
        let te = extract_features_from(&f, self.test_x, 512, self.device)?;
        let k = knn_k(self.train_x.len(), self.num_classes);
        let acc = knn_top1(&tr, &self.train_y, &te, &self.test_y, k, 0.1, self.num_classes)?;
        Ok(vec![("knn_top1", acc)])
    }
}

/// kNN (`k` from [`knn_k`], T = 0.1) and linear-probe accuracy of one
/// encoder, with all training labels and with fractions of them.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// Weighted kNN top-1 on the test split.
    pub knn_top1: f64,
    /// Linear-probe top-1 on the test split.
    pub linear_top1: f64,
    /// Linear-probe details.
    pub linear: LinearProbeResult,
    /// Linear probes trained on [`LABEL_FRACTIONS`] of the training labels.
    pub label_efficiency: Vec<FractionScore>,
    /// Feature dimension.
    pub feature_dim: i64,
}

impl EvalReport {
    /// The figures for a report's `ssl` or `random_init` section:
    /// `knn_top1`, `linear_top1` and `linear_top1_1pct`, `linear_top1_10pct`.
    pub fn summary(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"knn_top1": self.knn_top1, "linear_top1": self.linear_top1});
        for f in &self.label_efficiency {
            v[format!("linear_top1_{}", fraction_name(f.fraction))] = serde_json::json!(f.linear_top1);
        }
        v
    }
}

/// Both evaluations on precomputed features; the label subsets are drawn
/// with `seed` (the same subsets for every encoder evaluated with it).
pub fn evaluate_features(
    train_f: &Tensor,
    train_y: &Tensor,
    test_f: &Tensor,
    test_y: &Tensor,
    num_classes: usize,
    seed: u64,
) -> Result<EvalReport> {
    let k = knn_k(train_f.size()[0] as usize, num_classes);
    let knn = knn_top1(train_f, train_y, test_f, test_y, k, 0.1, num_classes)?;
    let (linear, _) =
        linear_probe(train_f, train_y, test_f, test_y, num_classes, &LinearProbeConfig::default())?;
    let label_efficiency =
        label_efficiency(train_f, train_y, test_f, test_y, num_classes, &LABEL_FRACTIONS, seed)?;
    Ok(EvalReport {
        knn_top1: knn,
        linear_top1: linear.test_top1,
        linear,
        label_efficiency,
        feature_dim: train_f.size()[1],
    })
}

/// The label fractions below 100% that every report gives: 1% and 10%.
pub const LABEL_FRACTIONS: [f64; 2] = [0.01, 0.1];

/// A class-balanced subset of `labels`: of each class, `fraction` of its
/// samples (rounded, at least `min_per_class` and at most all of them),
/// drawn with `seed`. The indices are returned in increasing order.
pub fn balanced_subset(labels: &[i64], fraction: f64, min_per_class: usize, seed: u64) -> Vec<usize> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut chosen = Vec::new();
    for c in 0..classes {
        let mut ids: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        ids.shuffle(&mut rng);
        let n = ((ids.len() as f64 * fraction).round() as usize).max(min_per_class).min(ids.len());
        chosen.extend_from_slice(&ids[..n]);
    }
    chosen.sort_unstable();
    chosen
}

/// Which training samples a validation split of `fraction` of each class
/// holds out (`train-vision` and `train-audio --val-fraction`): a
/// [`balanced_subset`] drawn with (a function of) `seed`, as a mask. A
/// fraction that would hold out every training sample of a class is an
/// error naming the class (`classes[label]`, or the label where `classes`
/// has no name for it).
pub fn validation_mask(labels: &[i64], fraction: f64, seed: u64, classes: &[String]) -> Result<Vec<bool>> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::Config(format!(
            "the validation fraction must lie strictly between 0 and 1, not {fraction}"
        )));
    }
    let mut held = vec![false; labels.len()];
    for i in balanced_subset(labels, fraction, 0, seed ^ 0x5641_4c49_4441_5445) {
        held[i] = true;
    }
    let count = labels.iter().copied().max().map_or(0, |m| m + 1);
    for c in 0..count {
        let (n, out) = labels
            .iter()
            .zip(&held)
            .filter(|(l, _)| **l == c)
            .fold((0, 0), |(n, o), (_, h)| (n + 1, o + usize::from(*h)));
        if n > 0 && out == n {
            return Err(Error::Config(format!(
                "the validation fraction {fraction} holds out all {n} training sample(s) of class {}, leaving it \
                 none to train on: lower the fraction or add samples",
                classes.get(c as usize).map_or_else(|| c.to_string(), |name| format!("`{name}`"))
            )));
        }
    }
    Ok(held)
}

/// The labelled subset that a report's `fraction` figures use, for both
/// the linear probes and fine-tuning: [`balanced_subset`] with at least
/// one sample per class, drawn with (a function of) the run's `seed`.
pub fn label_subset(labels: &[i64], fraction: f64, seed: u64) -> Vec<usize> {
    balanced_subset(labels, fraction, 1, seed ^ 0x4c41_4245_4c53)
}

/// A linear probe trained on a fraction of the training labels.
#[derive(Clone, Debug, Serialize)]
pub struct FractionScore {
    /// The fraction of each class's training labels used.
    pub fraction: f64,
    /// The labelled samples that gives.
    pub labels: usize,
    /// Linear-probe top-1 on the (whole) test split.
    pub linear_top1: f64,
    /// Linear-probe macro-F1 on the test split.
    pub linear_macro_f1: f64,
}

/// A fraction as a report key: `1pct`, `10pct`, `0.5pct`.
pub fn fraction_name(fraction: f64) -> String {
    format!("{}pct", percent(fraction))
}

/// A fraction as a percentage without float noise: 0.3 → `30`, 0.005 →
/// `0.5`.
pub fn percent(fraction: f64) -> String {
    let pct = (100.0 * fraction * 1e6).round() / 1e6;
    format!("{pct}")
}

/// Linear probes trained on class-balanced `fractions` of the training
/// features ([`balanced_subset`], at least one sample per class), each
/// scored on the whole test split.
///
/// # Shapes
/// `train_f: [N, F]`, `train_y: [N]`, `test_f: [M, F]`, `test_y: [M]`
pub fn label_efficiency(
    train_f: &Tensor,
    train_y: &Tensor,
    test_f: &Tensor,
    test_y: &Tensor,
    num_classes: usize,
    fractions: &[f64],
    seed: u64,
) -> Result<Vec<FractionScore>> {
    check(train_f, train_y, test_f, test_y)?;
    let labels: Vec<i64> = Vec::try_from(train_y.to_kind(Kind::Int64).to_device(Device::Cpu))?;
    fractions
        .iter()
        .map(|&fraction| {
            if !(fraction > 0.0 && fraction <= 1.0) {
                return Err(Error::Config(format!("a label fraction must lie in (0, 1], not {fraction}")));
            }
            let ids: Vec<i64> = label_subset(&labels, fraction, seed).into_iter().map(|i| i as i64).collect();
            let idx = Tensor::from_slice(&ids).to_device(train_f.device());
            let (f, y) = (train_f.index_select(0, &idx), train_y.index_select(0, &idx));
            let (r, _) = linear_probe(&f, &y, test_f, test_y, num_classes, &LinearProbeConfig::default())?;
            Ok(FractionScore {
                fraction,
                labels: ids.len(),
                linear_top1: r.test_top1,
                linear_macro_f1: r.test_macro_f1,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_f1_matches_scikit_learn() {
        // sklearn.metrics.f1_score([0,0,1,1,2,2], [0,1,1,1,0,0], average="macro")
        // = mean(0.4, 0.8, 0.0) = 0.4
        let y = Tensor::from_slice(&[0i64, 0, 1, 1, 2, 2]);
        let p = Tensor::from_slice(&[0i64, 1, 1, 1, 0, 0]);
        assert!((macro_f1(&p, &y, 3) - 0.4).abs() < 1e-12);
        // A class absent from both does not count.
        assert!((macro_f1(&p, &y, 5) - 0.4).abs() < 1e-12);
        assert_eq!(macro_f1(&y, &y, 3), 1.0);
    }

    /// Two well-separated Gaussian blobs per class: both evaluations must be
    /// near perfect; with labels shuffled, near chance.
    fn blobs(n: i64, seed: i64) -> (Tensor, Tensor) {
        tch::manual_seed(seed);
        let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(3);
        let centers = Tensor::eye(3, (Kind::Float, Device::Cpu)).repeat([1, 4]) * 5.0;
        let x = centers.index_select(0, &y) + Tensor::randn([n, 12], (Kind::Float, Device::Cpu));
        (x, y)
    }

    #[test]
    fn knn_and_probe_separate_blobs() {
        let (x, y) = blobs(300, 0);
        let (xt, yt) = blobs(90, 1);
        let r = evaluate_features(&x, &y, &xt, &yt, 3, 0).unwrap();
        assert!(r.knn_top1 > 0.95, "{}", r.knn_top1);
        assert!(r.linear_top1 > 0.95, "{}", r.linear_top1);
        // Labels drawn independently of the blobs (a seeded Rust RNG, not
        // libtorch's global one, which parallel tests share).
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let noise: Vec<i64> = (0..300).map(|_| rng.gen_range(0..3)).collect();
        let r = evaluate_features(&x, &Tensor::from_slice(&noise), &xt, &yt, 3, 0).unwrap();
        assert!(r.knn_top1 < 0.6, "{}", r.knn_top1);
        assert!(r.linear_top1 < 0.6, "{}", r.linear_top1);
    }

    #[test]
    fn a_validation_split_leaves_every_class_something_to_train_on() {
        // Class 1 has one sample: 0.5 of it rounds to 1, all of it.
        let labels = [0i64, 0, 0, 0, 1, 2, 2];
        let names = ["a", "b", "c"].map(String::from);
        let err = validation_mask(&labels, 0.5, 0, &names).unwrap_err().to_string();
        assert!(err.contains("holds out all 1 training sample(s) of class `b`"), "{err}");
        let err = validation_mask(&labels, 0.5, 0, &[]).unwrap_err().to_string();
        assert!(err.contains("of class 1,"), "{err}");
        let held = validation_mask(&labels, 0.25, 0, &names).unwrap();
        assert_eq!(held.iter().filter(|h| **h).count(), 2, "{held:?}");
        assert!(validation_mask(&labels, 1.0, 0, &names).is_err());
    }

    #[test]
    fn balanced_subsets_take_each_class_share_and_follow_the_seed() {
        // Class 0: 50 samples, class 1: 30, class 2: 20.
        let labels: Vec<i64> = (0..100)
            .map(|i| {
                if i < 50 {
                    0
                } else if i < 80 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let count = |ids: &[usize], c: i64| ids.iter().filter(|&&i| labels[i] == c).count();
        let a = balanced_subset(&labels, 0.1, 1, 7);
        assert_eq!((count(&a, 0), count(&a, 1), count(&a, 2)), (5, 3, 2));
        assert!(a.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        assert_eq!(balanced_subset(&labels, 0.1, 1, 7), a, "fixed by the seed");
        assert_ne!(balanced_subset(&labels, 0.1, 1, 8), a);
        // 1% rounds to 0 or 1: at least one per class.
        let b = balanced_subset(&labels, 0.01, 1, 7);
        assert_eq!((count(&b, 0), count(&b, 1), count(&b, 2)), (1, 1, 1));
        assert_eq!(balanced_subset(&labels, 1.0, 1, 7).len(), 100);
    }

    #[test]
    fn fewer_labels_score_lower_on_a_hard_problem_and_are_reported_by_name() {
        // Overlapping blobs: 1% of the labels (one per class) is not enough.
        tch::manual_seed(1);
        let n = 900;
        let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(3);
        let centers = Tensor::eye(3, (Kind::Float, Device::Cpu)).repeat([1, 8]) * 0.8;
        let x = centers.index_select(0, &y) + Tensor::randn([n, 24], (Kind::Float, Device::Cpu));
        let (xt, yt) = (x.narrow(0, 600, 300), y.narrow(0, 600, 300));
        let (x, y) = (x.narrow(0, 0, 600), y.narrow(0, 0, 600));
        let r = evaluate_features(&x, &y, &xt, &yt, 3, 0).unwrap();
        let fe = &r.label_efficiency;
        assert_eq!(fe.iter().map(|f| f.labels).collect::<Vec<_>>(), [6, 60]);
        assert!(fe[0].linear_top1 < r.linear_top1 - 0.05, "{} vs {}", fe[0].linear_top1, r.linear_top1);
        let s = r.summary();
        assert_eq!(s["linear_top1_1pct"].as_f64(), Some(fe[0].linear_top1));
        assert_eq!(s["linear_top1_10pct"].as_f64(), Some(fe[1].linear_top1));
        assert_eq!(fraction_name(0.005), "0.5pct");
        assert_eq!((fraction_name(0.3), percent(0.07)), ("30pct".to_string(), "7".to_string()));
        assert!(label_efficiency(&x, &y, &xt, &yt, 3, &[0.0], 0).is_err());
    }

    #[test]
    fn knn_votes_are_weighted() {
        // One very close neighbour of class 1 outvotes two far ones of class 0.
        let train = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 0.1, 1.0]).reshape([3, 2]);
        let y = Tensor::from_slice(&[1i64, 0, 0]);
        let test = Tensor::from_slice(&[1.0f32, 0.05]).reshape([1, 2]);
        let acc = knn_top1(&train, &y, &test, &Tensor::from_slice(&[1i64]), 3, 0.1, 2).unwrap();
        assert_eq!(acc, 1.0);
    }

    #[test]
    fn shape_errors_are_reported() {
        let x = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
        let y = Tensor::zeros([5], (Kind::Int64, Device::Cpu));
        let err = knn_top1(&x, &y, &x, &y, 2, 0.1, 2).unwrap_err().to_string();
        assert!(err.contains("labels must be [N]"), "{err}");
    }

    #[test]
    fn pca_finds_the_spread_direction() {
        tch::manual_seed(3);
        // Points spread along (1, 1, 0) with small noise.
        let t = Tensor::randn([200, 1], (Kind::Float, Device::Cpu)) * 5.0;
        let dir = Tensor::from_slice(&[1.0f32, 1.0, 0.0]).reshape([1, 3]);
        let x = t.matmul(&dir) + Tensor::randn([200, 3], (Kind::Float, Device::Cpu)) * 0.1;
        let p = pca_2d(&x);
        assert_eq!(p.size(), [200, 2]);
        let var = p.var_dim([0i64].as_slice(), true, false);
        assert!(var.double_value(&[0]) > 100.0 * var.double_value(&[1]));
    }
}

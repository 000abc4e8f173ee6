//! Full fine-tuning of an encoder with labels, for any modality: a new
//! linear head on the encoder, both trained end to end (AdamW or any
//! [`OptimizerConfig`], linear warmup for a tenth of the steps then cosine
//! decay) on the first view of labelled batches, optionally mixed and with
//! smoothed labels ([`crate::mixup`], MAE's ViT recipe), then scored on a
//! held-out split. Run on a pretrained encoder and on the same architecture at
//! random initialisation, it tells how much pretraining helps when labels
//! are used end to end.
//!
//! [`train_classifier`] is the one training loop of every fine-tuning in
//! ssl-rs: [`fine_tune`] here (vision and audio: a new head on the
//! encoder) and ssl-text's (BERT with its classification head, over
//! length-grouped batches of token ids and attention masks).
//!
//! The head standardises the features per dimension before its linear
//! layer (a BatchNorm without affine parameters, as MAE's probing head and
//! [`crate::eval::linear_probe`]): a transformer's pooled token after its
//! final LayerNorm carries a large offset shared by every input, which
//! otherwise swamps what a new head must learn in a few epochs.

use crate::eval::InputChunks;
use crate::method::BatchSource;
use crate::mixup::{soft_cross_entropy, MixupConfig};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::schedule::WarmupCosine;
use crate::{Error, Result};
use serde::Serialize;
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};

/// What fine-tuning reports.
#[derive(Clone, Debug, Serialize)]
pub struct FineTuneResult {
    /// Top-1 on the held-out split.
    pub test_top1: f64,
    /// Mean training loss of the last epoch.
    pub final_train_loss: f64,
    /// Mean training loss of each epoch (the last is `final_train_loss`).
    pub train_loss_curve: Vec<f64>,
    /// Macro-averaged F1 on the held-out split, where the modality reports
    /// it (text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_macro_f1: Option<f64>,
    /// Held-out top-1 after each epoch, where it is measured (text), for
    /// reading the learning curve: the reported score is always the last
    /// epoch's, no epoch is chosen on the test split.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub test_top1_curve: Vec<f64>,
    /// Each seed's top-1 when fine-tuning ran with several seeds (text);
    /// `test_top1`, the F1 and the curves are then their means.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<f64>,
}

impl FineTuneResult {
    /// The mean of several runs (seeds) of one fine-tuning: scores and
    /// curves averaged (epoch by epoch, over the runs that reach it), each
    /// run's top-1 kept in `runs`. `None` without runs.
    pub fn mean(runs: &[FineTuneResult]) -> Option<FineTuneResult> {
        let n = runs.len();
        if n == 0 {
            return None;
        }
        let avg = |f: &dyn Fn(&FineTuneResult) -> f64| runs.iter().map(f).sum::<f64>() / n as f64;
        let curve = |f: &dyn Fn(&FineTuneResult) -> &Vec<f64>| -> Vec<f64> {
            let len = runs.iter().map(|r| f(r).len()).max().unwrap_or(0);
            (0..len)
                .map(|e| {
                    let at: Vec<f64> = runs.iter().filter_map(|r| f(r).get(e).copied()).collect();
                    at.iter().sum::<f64>() / at.len() as f64
                })
                .collect()
        };
        let train_loss_curve = curve(&|r| &r.train_loss_curve);
        let f1: Option<Vec<f64>> = runs.iter().map(|r| r.test_macro_f1).collect();
        Some(FineTuneResult {
            test_top1: avg(&|r| r.test_top1),
            final_train_loss: train_loss_curve.last().copied().unwrap_or(f64::NAN),
            train_loss_curve,
            test_macro_f1: f1.map(|v| v.iter().sum::<f64>() / n as f64),
            test_top1_curve: curve(&|r| &r.test_top1_curve),
            runs: runs.iter().map(|r| r.test_top1).collect(),
        })
    }
}

/// How to fine-tune, besides the data.
#[derive(Clone, Debug, Serialize)]
pub struct FineTuneRecipe {
    /// Epochs over the labelled batches.
    pub epochs: usize,
    /// The optimizer; its `lr` is the peak of the schedule.
    pub optimizer: OptimizerConfig,
    /// Mixup, CutMix and label smoothing
    /// ([`MixupConfig::smoothing_only`]`(0.0)`: plain cross-entropy).
    pub mixup: MixupConfig,
    /// Seed of the mixing draws.
    pub seed: u64,
    /// Run the encoder in evaluation mode while it is fine-tuned (PyTorch's
    /// `encoder.eval()`; the new head still trains): its BatchNorm layers
    /// normalise with their running statistics, which stay as they are
    /// (their scales and shifts still learn), and dropout is off. For an
    /// encoder pretrained that way (BYOL-A's `encoder_eval_mode`), whose
    /// layers never saw batch statistics.
    pub encoder_eval_mode: bool,
}

impl FineTuneRecipe {
    /// Plain cross-entropy with `optimizer` for `epochs`, the encoder in
    /// training mode.
    pub fn plain(epochs: usize, optimizer: OptimizerConfig) -> Self {
        Self { epochs, optimizer, mixup: MixupConfig::smoothing_only(0.0), seed: 0, encoder_eval_mode: false }
    }
}

/// Fine-tuning on a fraction of the labels: the batch (at most the
/// labelled samples) and the epochs that give the same number of optimizer
/// steps as the run on all labels, so that fewer labels mean fewer
/// distinct samples, not less training.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FractionPlan {
    /// The fraction of the labels.
    pub fraction: f64,
    /// Labelled samples.
    pub labels: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Epochs over the labelled samples.
    pub epochs: usize,
}

impl FractionPlan {
    /// The plan for `labels` of `all` samples, when all of them train for
    /// `epochs` of `batch_size` (full batches only, as the data sources
    /// drop the last partial one).
    pub fn new(fraction: f64, labels: usize, all: usize, batch_size: usize, epochs: usize) -> Self {
        Self::with_batches(fraction, labels, all, batch_size, epochs, |n, b| (n / b).max(1))
    }

    /// The same for a source whose epoch over `n` samples in batches of
    /// `b` has `batches(n, b)` batches.
    pub fn with_batches(
        fraction: f64,
        labels: usize,
        all: usize,
        batch_size: usize,
        epochs: usize,
        batches: impl Fn(usize, usize) -> usize,
    ) -> Self {
        let full_steps = epochs * batches(all, batch_size.max(1)).max(1);
        let batch = batch_size.min(labels).max(1);
        let per_epoch = batches(labels, batch).max(1);
        Self { fraction, labels, batch_size: batch, epochs: full_steps.div_ceil(per_epoch).max(1) }
    }
}

/// Fine-tuning of the pretrained encoder and of random initialisation on
/// one fraction of the labels.
#[derive(Clone, Debug, Serialize)]
pub struct FractionResult {
    /// Labels, batch and epochs.
    pub plan: FractionPlan,
    /// The pretrained encoder.
    pub ssl: FineTuneResult,
    /// Random initialisation.
    pub random_init: FineTuneResult,
}

/// Writes `rows` into a report: `finetune_top1` (all labels) and
/// `finetune_top1_1pct`, `finetune_top1_10pct`, … into its `ssl` and
/// `random_init` sections.
pub fn add_to_report(report: &mut serde_json::Value, rows: &[FractionResult]) {
    for r in rows {
        let key = if r.plan.fraction >= 1.0 {
            "finetune_top1".to_string()
        } else {
            format!("finetune_top1_{}", crate::eval::fraction_name(r.plan.fraction))
        };
        report["ssl"][&key] = serde_json::json!(r.ssl.test_top1);
        report["random_init"][&key] = serde_json::json!(r.random_init.test_top1);
    }
}

/// Fine-tunes `encoder` (its variables in `encoder_vs`, `feature_dim` wide)
/// with a new head for `num_classes` as `recipe` says over `source`
/// (labelled batches; the first view is used), then scores it on
/// `test_x`/`test_y`. The encoder's weights change. CutMix needs
/// `[B, C, H, W]` inputs; other inputs with it are an error.
#[allow(clippy::too_many_arguments)]
pub fn fine_tune(
    encoder: &dyn ModuleT,
    encoder_vs: &nn::VarStore,
    feature_dim: i64,
    source: &dyn BatchSource,
    num_classes: usize,
    test_x: &dyn InputChunks,
    test_y: &Tensor,
    recipe: &FineTuneRecipe,
) -> Result<FineTuneResult> {
    let device = encoder_vs.device();
    let head_vs = nn::VarStore::new(device);
    let bn = nn::BatchNormConfig { affine: false, ..Default::default() };
    let norm = nn::batch_norm1d(head_vs.root() / "head_norm", feature_dim, bn);
    let linear = nn::linear(head_vs.root() / "head", feature_dim, num_classes as i64, Default::default());
    let head = |f: &Tensor, train: bool| linear.forward(&f.apply_t(&norm, train));
    let mut named: Vec<(String, Tensor)> = encoder_vs.variables().into_iter().collect();
    named.extend(head_vs.variables());
    let per_epoch = source.batches_per_epoch();
    let cfg = LoopConfig {
        epochs: recipe.epochs,
        optimizer: recipe.optimizer.clone(),
        warmup_steps: per_epoch.min(recipe.epochs * per_epoch / 10),
        grad_clip: None,
        mixup: recipe.mixup.clone(),
        seed: recipe.seed,
    };
    let eval_mode = recipe.encoder_eval_mode;
    let logits = |x: &Tensor, _: &crate::method::Batch, train: bool| {
        Ok(head(&encoder.forward_t(x, train && !eval_mode), train))
    };
    let curve = train_classifier(&logits, named, source, num_classes, device, &cfg, &mut |_| Ok(()))?;
    let last_loss = curve.last().copied().unwrap_or(f64::NAN);
    let n = test_x.len();
    let mut correct = 0i64;
    for s in (0..n).step_by(512) {
        let k = 512.min(n - s);
        let x = test_x.chunk(s, k)?.to_device(device);
        let pred = tch::no_grad(|| head(&encoder.forward_t(&x, false), false).argmax(1, false));
        let y = test_y.narrow(0, s as i64, k as i64);
        correct += pred.to_device(Device::Cpu).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
    }
    Ok(FineTuneResult {
        test_top1: correct as f64 / n.max(1) as f64,
        final_train_loss: last_loss,
        train_loss_curve: curve,
        test_macro_f1: None,
        test_top1_curve: Vec::new(),
        runs: Vec::new(),
    })
}

/// Fine-tuning of both encoders on each of `fractions` of the training
/// labels, the step of the experiment flow that vision and audio share:
/// for a fraction below 1 the class-balanced subset of `train_labels` fixed
/// by `seed` ([`crate::eval::label_subset`], the linear probes' subsets),
/// for 1 every sample; each fraction trains for as many optimizer steps as
/// `epochs` on all labels ([`FractionPlan`]). `run(plan, subset)` builds
/// fresh copies of the pretrained and the random-init encoder, fine-tunes
/// them on the samples `subset` (every one when `None`) as `plan` says, and
/// returns their results in that order (its errors are passed on). Says
/// on stderr what it starts, as the trainer does.
pub fn over_fractions<E>(
    fractions: &[f64],
    train_labels: &[i64],
    batch_size: usize,
    epochs: usize,
    seed: u64,
    mut run: impl FnMut(
        &FractionPlan,
        Option<&[usize]>,
    ) -> std::result::Result<(FineTuneResult, FineTuneResult), E>,
) -> std::result::Result<Vec<FractionResult>, E> {
    let n = train_labels.len();
    let mut rows = Vec::with_capacity(fractions.len());
    for &fraction in fractions {
        let subset = (fraction < 1.0).then(|| crate::eval::label_subset(train_labels, fraction, seed));
        let labels = subset.as_ref().map_or(n, Vec::len);
        let plan = FractionPlan::new(fraction.min(1.0), labels, n, batch_size.min(n), epochs);
        eprintln!(
            "fine-tuning both encoders on {}% of the labels ({} samples, {} epochs) ...",
            crate::eval::percent(fraction),
            plan.labels,
            plan.epochs
        );
        let (ssl, random_init) = run(&plan, subset.as_deref())?;
        rows.push(FractionResult { plan, ssl, random_init });
    }
    Ok(rows)
}

/// How [`train_classifier`] trains, besides the model and the data.
#[derive(Clone, Debug, Serialize)]
pub struct LoopConfig {
    /// Epochs over the source.
    pub epochs: usize,
    /// The optimizer and its peak learning rate.
    pub optimizer: OptimizerConfig,
    /// Steps of linear warmup, then cosine decay to 0 at the last step.
    pub warmup_steps: usize,
    /// Clip the global gradient norm to this before each step.
    pub grad_clip: Option<f64>,
    /// Mixup, CutMix and label smoothing (off: plain cross-entropy).
    pub mixup: MixupConfig,
    /// Seed of the mixing draws.
    pub seed: u64,
}

/// The training loop of every fine-tuning in ssl-rs (vision, audio and
/// text): for each batch of `source` (labelled; `views[0]` is the input)
/// the input is mixed as `cfg.mixup` says, `logits(x, batch, true)` scored
/// with the soft-target cross-entropy, the gradients of `params` clipped
/// when asked, and one optimizer step taken on a warmup-cosine schedule;
/// after each epoch, `after_epoch(epoch)` (0-based) runs, to evaluate for
/// a learning curve. `logits` gets the mixed input and the batch (for its
/// other views, such as a text's attention mask). Returns each epoch's
/// mean training loss.
pub fn train_classifier(
    logits: &dyn Fn(&Tensor, &crate::method::Batch, bool) -> Result<Tensor>,
    params: Vec<(String, Tensor)>,
    source: &dyn BatchSource,
    num_classes: usize,
    device: Device,
    cfg: &LoopConfig,
    after_epoch: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<Vec<f64>> {
    use rand::SeedableRng;
    cfg.mixup.check()?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut opt = Optimizer::new(&cfg.optimizer, params);
    let per_epoch = source.batches_per_epoch();
    let schedule = WarmupCosine {
        base_lr: cfg.optimizer.lr,
        final_lr: 0.0,
        warmup_steps: cfg.warmup_steps,
        total_steps: cfg.epochs * per_epoch,
    };
    let mut step = 0;
    let mut curve = Vec::with_capacity(cfg.epochs);
    for epoch in 0..cfg.epochs {
        let mut sum = Tensor::zeros([], (Kind::Float, device));
        for i in 0..per_epoch {
            let batch = source.batch(epoch, i)?.to_device(device);
            let y = batch
                .labels
                .as_ref()
                .ok_or_else(|| Error::Config("fine-tuning needs labelled batches".into()))?;
            let x = &batch.views[0];
            let mix = if cfg.mixup.mixes() {
                let size = x.size();
                if cfg.mixup.cutmix_alpha > 0.0 && size.len() != 4 {
                    return Err(Error::Config(format!(
                        "CutMix needs [B, C, H, W] inputs, got {size:?}; set its alpha to 0"
                    )));
                }
                let (h, w) = (size.get(2).copied().unwrap_or(1), size.get(3).copied().unwrap_or(1));
                cfg.mixup.sample(h, w, &mut rng)
            } else {
                crate::mixup::Mix::None
            };
            let (x, targets) = mix.apply(x, y, num_classes as i64, cfg.mixup.label_smoothing);
            opt.zero_grad();
            let loss = soft_cross_entropy(&logits(&x, &batch, true)?, &targets);
            loss.backward();
            if let Some(c) = cfg.grad_clip {
                opt.clip_grad_norm(c);
            }
            opt.step(schedule.lr(step));
            step += 1;
            sum += loss.detach();
        }
        curve.push(sum.double_value(&[]) / per_epoch.max(1) as f64);
        after_epoch(epoch)?;
    }
    Ok(curve)
}

/// Copies an encoder's weights from a method's `method_vs` into
/// `encoder_vs` (the encoder built at its root), finding each variable
/// under the first of `prefixes` that has it (e.g. `"online.backbone."`).
pub fn copy_encoder(method_vs: &nn::VarStore, encoder_vs: &nn::VarStore, prefixes: &[&str]) -> Result<()> {
    let src = method_vs.variables();
    for (name, dst) in encoder_vs.variables() {
        let found = prefixes.iter().find_map(|p| src.get(&format!("{p}{name}")));
        let t = found.ok_or_else(|| Error::Config(format!("the method has no encoder variable `{name}`")))?;
        if t.size() != dst.size() {
            return Err(Error::Config(format!("encoder `{name}`: {:?} vs {:?}", t.size(), dst.size())));
        }
        tch::no_grad(|| dst.shallow_clone().copy_(t));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(top1: f64, f1: Option<f64>, losses: &[f64], curve: &[f64]) -> FineTuneResult {
        FineTuneResult {
            test_top1: top1,
            final_train_loss: losses.last().copied().unwrap_or(f64::NAN),
            train_loss_curve: losses.to_vec(),
            test_macro_f1: f1,
            test_top1_curve: curve.to_vec(),
            runs: Vec::new(),
        }
    }

    #[test]
    fn the_mean_of_runs_averages_scores_and_curves_and_keeps_each_run() {
        let a = result(0.6, Some(0.5), &[1.0, 0.5], &[0.4, 0.6]);
        let b = result(0.8, Some(0.7), &[2.0, 1.5], &[0.6, 0.8]);
        let m = FineTuneResult::mean(&[a.clone(), b]).unwrap();
        assert!((m.test_top1 - 0.7).abs() < 1e-12);
        assert!((m.test_macro_f1.unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(m.train_loss_curve, [1.5, 1.0]);
        assert_eq!(m.final_train_loss, 1.0);
        assert!((m.test_top1_curve[0] - 0.5).abs() < 1e-12 && (m.test_top1_curve[1] - 0.7).abs() < 1e-12);
        assert_eq!(m.runs, [0.6, 0.8]);
        // Without an F1 on every run there is no mean F1; no run, no mean.
        let c = result(0.7, None, &[1.0], &[]);
        assert_eq!(FineTuneResult::mean(&[a, c]).unwrap().test_macro_f1, None);
        assert!(FineTuneResult::mean(&[]).is_none());
    }

    /// Two batches of 8 samples, 3 features shifted by 5 and 6 (far from a
    /// BatchNorm's starting statistics), labelled by the sign of the first
    /// feature before the shift.
    struct Shifted;

    impl BatchSource for Shifted {
        fn batches_per_epoch(&self) -> usize {
            2
        }
        fn batch_size(&self) -> usize {
            8
        }
        fn batch(&self, _: usize, index: usize) -> Result<crate::method::Batch> {
            let x = Tensor::randn([8, 3], (Kind::Float, Device::Cpu)) + 5.0 + index as f64;
            let y = x.select(1, 0).gt(5.0 + index as f64).to_kind(Kind::Int64);
            Ok(crate::method::Batch { views: vec![x], labels: Some(y) })
        }
    }

    #[test]
    fn an_encoder_fine_tuned_in_eval_mode_keeps_its_batch_norm_statistics() {
        tch::manual_seed(0);
        let running_mean_after = |eval_mode: bool| {
            let vs = nn::VarStore::new(Device::Cpu);
            let encoder = nn::seq_t()
                .add(nn::linear(vs.root() / "0", 3, 4, Default::default()))
                .add(nn::batch_norm1d(vs.root() / "1", 4, Default::default()));
            let test_x = Tensor::randn([6, 3], (Kind::Float, Device::Cpu));
            let test_y = Tensor::zeros([6], (Kind::Int64, Device::Cpu));
            let recipe = FineTuneRecipe {
                encoder_eval_mode: eval_mode,
                ..FineTuneRecipe::plain(2, OptimizerConfig::adamw(1e-2, 0.0))
            };
            let weight_before = vs.variables()["0.weight"].copy();
            fine_tune(&encoder, &vs, 4, &Shifted, 2, &test_x, &test_y, &recipe).unwrap();
            let vars = vs.variables();
            // The encoder trains either way.
            assert!(vars["0.weight"].ne_tensor(&weight_before).any().int64_value(&[]) == 1);
            vars["1.running_mean"].abs().max().double_value(&[])
        };
        // Training mode moves the running mean towards the shifted inputs;
        // evaluation mode leaves it at its start, 0.
        assert!(running_mean_after(false) > 0.1);
        assert_eq!(running_mean_after(true), 0.0);
    }

    #[test]
    fn a_fraction_of_the_labels_trains_for_as_many_steps() {
        // 4000 samples, batch 256: 15 steps per epoch, 10 epochs = 150 steps.
        assert_eq!(FractionPlan::new(1.0, 4000, 4000, 256, 10).epochs, 10);
        let p = FractionPlan::new(0.1, 400, 4000, 256, 10);
        assert_eq!((p.batch_size, p.epochs), (256, 150));
        let p = FractionPlan::new(0.01, 40, 4000, 256, 10);
        assert_eq!((p.batch_size, p.epochs), (40, 150));
        // Partial batches kept: 100 samples in 32s are 4 batches an epoch.
        let p = FractionPlan::with_batches(0.1, 100, 1000, 32, 8, usize::div_ceil);
        assert_eq!(p.epochs, 8 * 32 / 4);
    }
}

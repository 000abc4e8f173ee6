//! The training loop: batches from a [`BatchSource`] (built on a producer
//! thread, so augmentation overlaps compute), a [`Method`]'s loss, backward,
//! gradient clipping, the optimizer with a warmup + cosine schedule, the
//! method's after-step hook (EMA), JSONL metrics, a progress bar, and atomic
//! checkpoints that `resume` continues from.
//!
//! Two monitors, as solo-learn has: an online linear probe trained on the
//! detached features of each batch (it never changes the encoder), and an
//! [`EpochMonitor`] (a kNN classifier, say) run every few epochs. Each
//! epoch also gets the collapse figures of rank 0's latest training
//! features ([`crate::collapse`]: RankMe, normalised spread), logged, shown,
//! and turned into a warning when they collapse.
//!
//! Distributed (several ranks in `ssl_dist::world()`): the batch size is
//! the global batch, and each rank trains on its [`Part`] of every global
//! batch in one process's order, so the run sees the same samples per step
//! and follows the same schedule as one process. Parameters and buffers
//! are broadcast from rank 0 at the start (after a resume too); gradients
//! are averaged with c10d's Reducer during backward, as PyTorch DDP. Only
//! rank 0 writes `metrics.jsonl`, checkpoints and the progress display and
//! runs the epoch monitor; logged losses are means over every rank. The
//! ranks first check that they were started with the same configuration.
//!
//! Exact resume: before every optimizer step the trainer reseeds
//! libtorch's CPU and CUDA generators from (seed, rank, step)
//! ([`crate::augment::step_seed`]), the data order and views are seeded per
//! epoch and sample, and a checkpoint holds everything else the rest of
//! the run depends on: weights and buffers (EMA targets, queues, centres),
//! the optimizer, the step (and with it the position inside the epoch and
//! the schedules), the online probe with its optimizer and counters, the
//! epoch's partial loss sum, the features kept for the collapse figures
//! and the alarm's history. A run stopped after any checkpointed step and
//! resumed on the CPU with the same thread count computes what an
//! uninterrupted one does. Checkpoints are written at epoch ends
//! (`checkpoint_every`), every `checkpoint_every_steps` steps and every
//! `checkpoint_every_minutes` minutes; on resume `metrics.jsonl` is cut
//! back to the checkpoint's step, so no row appears twice.
//!
//! Preemption: [`Trainer::with_stop`] takes a flag (set by the binary's
//! SIGTERM/SIGINT handler); once it is set, the current step finishes, a
//! checkpoint is written and `fit` returns [`Error::Interrupted`]. With
//! several ranks the flag is combined over the ranks on every logging step
//! (one scalar all-reduce), so they stop together.
//!
//! Numerical faults: a step whose loss (on any rank) or global gradient
//! norm is not finite is skipped (no update, no EMA step), logged with
//! `"skipped"` in `metrics.jsonl` and counted in the summary;
//! `max_skipped_in_a_row` of them in a row, an epoch without a good step,
//! or a forward pass that left a non-finite value in a buffer stop the run
//! with [`Error::Diverged`], and weights with a NaN or an infinity are
//! never checkpointed. Checking costs one device synchronisation per step
//! (reading the norm and the loss), as PyTorch's `GradScaler` pays. A
//! libtorch failure inside a step that tch raises as a panic (a CUDA
//! out-of-memory) becomes [`Error::Step`], naming the step and the batch
//! size and what to try.
//!
//! Gradient accumulation (`accumulate`): each optimizer step's global
//! batch is cut into `accumulate` micro-batches (on every rank), whose
//! gradients add up; only the last micro-batch's backward synchronises.
//! Losses over in-batch negatives (NT-Xent, InfoNCE, COLA) then see the
//! negatives of one micro-batch (batch / accumulate samples, gathered from
//! every rank), not of the whole step.

use crate::checkpoint::{self, CheckpointState};
use crate::collapse::{collapse_stats, CollapseAlarm, CollapseStats};
use crate::method::{Batch, BatchSource, Method, Metrics, Output, Part, Progress};
use crate::metrics::{progress_bar, JsonlLog};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::schedule::WarmupCosine;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// How to train (the method and data are configured by the caller).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Epochs to train.
    pub epochs: usize,
    /// Optimizer and peak learning rate.
    pub optimizer: OptimizerConfig,
    /// Epochs of linear warmup.
    pub warmup_epochs: usize,
    /// Learning rate at the end of the cosine decay.
    pub final_lr: f64,
    /// Clip the global gradient norm to this value.
    pub grad_clip: Option<f64>,
    /// bf16 autocast (CUDA only; ignored on the CPU).
    pub bf16: bool,
    /// Write a checkpoint every this many epochs (the last epoch always).
    pub checkpoint_every: usize,
    /// Checkpoints to keep.
    pub keep_checkpoints: usize,
    /// Write a metrics line every this many steps.
    pub log_every: usize,
    /// Train an online linear probe with this many classes on the
    /// method's features (when the batches carry labels).
    #[serde(default)]
    pub online_probe_classes: Option<usize>,
    /// Run the epoch monitor every this many epochs (and after the last).
    #[serde(default = "one")]
    pub monitor_every: usize,
    /// Micro-batches per optimizer step (gradient accumulation; see the
    /// module docs). The batch size must be a multiple of it times the
    /// number of ranks.
    #[serde(default = "one")]
    pub accumulate: usize,
    /// The run's seed: libtorch's generators are reseeded from it, the
    /// rank and the step before every optimizer step (see the module docs).
    #[serde(default)]
    pub seed: u64,
    /// Also write a checkpoint every this many optimizer steps (0: off).
    #[serde(default)]
    pub checkpoint_every_steps: usize,
    /// Also write a checkpoint once this many minutes of training have
    /// passed since the last one (0: off).
    #[serde(default)]
    pub checkpoint_every_minutes: f64,
    /// Stop with an error after this many steps in a row were skipped for
    /// a non-finite loss or gradient.
    #[serde(default = "five")]
    pub max_skipped_in_a_row: usize,
}

fn five() -> usize {
    5
}

fn one() -> usize {
    1
}

/// An evaluation run between epochs, e.g. a kNN classifier on frozen
/// features. Its metrics go to `metrics.jsonl` and the epoch line.
pub trait EpochMonitor {
    /// Metrics of the method as it is now.
    fn evaluate(&self, method: &dyn Method) -> Result<Vec<(&'static str, f64)>>;
}

/// A linear classifier trained on detached features alongside the method.
/// The features are standardised per dimension with the batch's statistics
/// first (a BatchNorm without affine parameters, as MAE's linear probe), so
/// the probe's step size does not depend on the encoder's feature scale,
/// which differs by orders of magnitude between methods and drifts during
/// training. It is only ever scored on training batches.
struct OnlineProbe {
    weight: Tensor,
    bias: Tensor,
    opt: Optimizer,
    /// Correct predictions and samples this epoch, as device scalars (read
    /// only when logging).
    correct: Tensor,
    seen: Tensor,
}

impl OnlineProbe {
    fn new(dim: i64, classes: usize, device: tch::Device) -> Self {
        let opts = (Kind::Float, device);
        // Zeros: the problem is convex, and the probe then draws nothing
        // from the global random generator.
        let weight = Tensor::zeros([classes as i64, dim], opts).set_requires_grad(true);
        let bias = Tensor::zeros([classes as i64], opts).set_requires_grad(true);
        let opt = Optimizer::new(
            &OptimizerConfig::adamw(1e-3, 0.0),
            vec![("weight".into(), weight.shallow_clone()), ("bias".into(), bias.shallow_clone())],
        );
        let zero = Tensor::zeros([], opts);
        Self { weight, bias, opt, correct: zero.copy(), seen: zero }
    }

    /// Cross entropy on `features` (detached here), counting accuracy.
    fn loss(&mut self, features: &Tensor, labels: &Tensor) -> Tensor {
        let f = features.detach().to_kind(Kind::Float);
        let (var, mean) = f.var_mean_dim([0i64].as_slice(), false, true);
        let f = (f - mean) / (var + 1e-5).sqrt();
        let logits = f.linear(&self.weight, Some(&self.bias));
        tch::no_grad(|| {
            let hits = logits.argmax(1, false).eq_tensor(labels).sum(Kind::Float);
            self.correct += hits;
            self.seen += labels.size()[0] as f64;
        });
        logits.cross_entropy_for_logits(labels)
    }

    /// Its tensors for a checkpoint, named `probe.*`.
    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            ("probe.weight".to_string(), self.weight.detach()),
            ("probe.bias".to_string(), self.bias.detach()),
            ("probe.correct".to_string(), self.correct.shallow_clone()),
            ("probe.seen".to_string(), self.seen.shallow_clone()),
        ];
        out.extend(self.opt.state_tensors().into_iter().map(|(n, t)| (format!("probe.opt.{n}"), t)));
        out
    }

    /// The probe saved by [`OnlineProbe::state_tensors`], if `named` holds
    /// one.
    fn restore(
        named: &std::collections::HashMap<String, Tensor>,
        device: tch::Device,
        path: &Path,
    ) -> Result<Option<Self>> {
        let Some(w) = named.get("probe.weight") else { return Ok(None) };
        let (classes, dim) = (w.size()[0], w.size()[1]);
        let mut p = Self::new(dim, classes as usize, device);
        let get = |k: &str| {
            named.get(k).ok_or_else(|| Error::Checkpoint {
                path: path.to_path_buf(),
                msg: format!("trainer.safetensors has probe.weight but no `{k}`"),
            })
        };
        tch::no_grad(|| -> Result<()> {
            p.weight.copy_(get("probe.weight")?);
            p.bias.copy_(get("probe.bias")?);
            p.correct.copy_(get("probe.correct")?);
            p.seen.copy_(get("probe.seen")?);
            Ok(())
        })?;
        let opt: Vec<(String, Tensor)> = named
            .iter()
            .filter_map(|(n, t)| n.strip_prefix("probe.opt.").map(|k| (k.to_string(), t.shallow_clone())))
            .collect();
        p.opt.load_state_tensors(&opt).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            msg: format!("the online probe's optimizer state: {e}"),
        })?;
        Ok(Some(p))
    }

    /// Training-batch accuracy since the last call.
    fn take_accuracy(&mut self) -> f64 {
        let acc = (&self.correct / self.seen.clamp_min(1.0)).double_value(&[]);
        let _ = self.correct.zero_();
        let _ = self.seen.zero_();
        acc
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            optimizer: OptimizerConfig::lars(0.3, 1e-6),
            warmup_epochs: 1,
            final_lr: 0.0,
            grad_clip: None,
            bf16: true,
            checkpoint_every: 5,
            keep_checkpoints: 2,
            log_every: 10,
            online_probe_classes: None,
            monitor_every: 1,
            accumulate: 1,
            seed: 0,
            checkpoint_every_steps: 0,
            checkpoint_every_minutes: 0.0,
            max_skipped_in_a_row: 5,
        }
    }
}

/// What a finished run reports.
#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    /// Epochs completed in total (a resumed run counts the earlier ones).
    pub epochs: usize,
    /// Optimizer steps in total.
    pub steps: usize,
    /// Mean loss over the last epoch.
    pub final_loss: f64,
    /// Wall time of this invocation's training, in seconds.
    pub train_wall_s: f64,
    /// Samples per second over this invocation (all ranks together).
    pub samples_per_s: f64,
    /// Fraction of the training wall time the loop spent blocked waiting
    /// for the next batch from the producer thread (0: data never held the
    /// device up). On CUDA, kernels run asynchronously, so a step's device
    /// work overlaps the wait until the next synchronisation (every logged
    /// step reads the loss).
    pub data_wait_fraction: f64,
    /// The collapse figures of the last epoch (rank 0's training features
    /// of its last batches; see [`crate::collapse`]), when the method
    /// returns features.
    pub collapse: Option<CollapseStats>,
    /// The collapse warnings of the run, each naming its epoch.
    pub collapse_warnings: Vec<String>,
    /// Optimizer steps skipped for a non-finite loss or gradient (each
    /// logged in `metrics.jsonl` with `"skipped"`).
    pub skipped_steps: usize,
}

/// Training feature rows the collapse figures are computed on.
const COLLAPSE_ROWS: i64 = 2048;

/// The most recent `cap` rows of a stream of `[B, F]` feature batches
/// (detached); fewer when fewer came.
struct RecentRows {
    cap: i64,
    rows: std::collections::VecDeque<Tensor>,
    count: i64,
}

impl RecentRows {
    fn new(cap: i64) -> Self {
        Self { cap, rows: Default::default(), count: 0 }
    }

    fn push(&mut self, f: &Tensor) {
        if f.dim() != 2 {
            return;
        }
        self.count += f.size()[0];
        self.rows.push_back(f.detach());
        while self.rows.len() > 1 && self.count - self.rows[0].size()[0] >= self.cap {
            let first = self.rows.pop_front().expect("not empty");
            self.count -= first.size()[0];
        }
    }

    /// The last `cap` rows (however the batches came), left in place.
    fn rows(&self) -> Option<Tensor> {
        if self.rows.is_empty() {
            return None;
        }
        let rows: Vec<Tensor> = self.rows.iter().map(Tensor::shallow_clone).collect();
        let all = Tensor::cat(&rows, 0);
        let n = all.size()[0];
        Some(if n > self.cap { all.narrow(0, n - self.cap, self.cap) } else { all })
    }

    /// The last `cap` rows, emptied.
    fn take(&mut self) -> Option<Tensor> {
        let rows = self.rows();
        self.rows.clear();
        self.count = 0;
        rows
    }
}

/// The training loop's state besides its tensors, kept in a checkpoint's
/// `state.json` (see the module docs).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct LoopState {
    /// Sum of this epoch's step losses so far, and their count.
    epoch_loss_sum: f64,
    epoch_steps: usize,
    /// Mean loss of the last completed epoch.
    final_loss: Option<f64>,
    alarm: CollapseAlarm,
    collapse: Option<CollapseStats>,
    collapse_warnings: Vec<String>,
    /// Steps skipped for a non-finite loss or gradient: in all, and the
    /// current run of them.
    #[serde(default)]
    skipped_steps: usize,
    #[serde(default)]
    bad_in_a_row: usize,
}

/// Trains one method on one device into one run folder.
pub struct Trainer {
    cfg: TrainConfig,
    device: tch::Device,
    run_dir: PathBuf,
    /// The whole resolved config of the run, saved in checkpoints.
    run_config: Value,
    /// Set (by a signal handler) to stop after the current step.
    stop: Option<Arc<AtomicBool>>,
}

impl Trainer {
    /// A trainer writing `metrics.jsonl` and `checkpoints/` under `run_dir`.
    pub fn new(cfg: TrainConfig, device: tch::Device, run_dir: &Path, run_config: Value) -> Self {
        Self { cfg, device, run_dir: run_dir.to_path_buf(), run_config, stop: None }
    }

    /// Stops training once `flag` is set: the current step finishes, a
    /// checkpoint is written, and `fit` returns [`Error::Interrupted`]. The
    /// trainer installs no signal handler itself; a binary sets the flag
    /// from one.
    pub fn with_stop(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    /// The checkpoint folder.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.run_dir.join("checkpoints")
    }

    /// A fresh (not resumed) run into a folder that holds an earlier run's
    /// checkpoints, log or report starts over: they are removed, with a
    /// notice, so that neither `--resume` (nor `--seeds --resume`, which
    /// keeps a seed whose folder has a report) nor the log mixes two runs.
    fn clear_previous_run(&self) -> Result<()> {
        let ckpt = self.checkpoint_dir();
        let log = self.run_dir.join("metrics.jsonl");
        let report = self.run_dir.join("report.json");
        if ckpt.exists() || log.exists() || report.exists() {
            eprintln!(
                "{} holds an earlier run: removing its checkpoints, metrics.jsonl and report.json (pass --resume to \
                 continue it instead)",
                self.run_dir.display()
            );
        }
        if report.exists() {
            std::fs::remove_file(&report).map_err(|e| Error::io(&report, e))?;
        }
        if ckpt.exists() {
            std::fs::remove_dir_all(&ckpt).map_err(|e| Error::io(&ckpt, e))?;
        }
        if log.exists() {
            std::fs::remove_file(&log).map_err(|e| Error::io(&log, e))?;
        }
        Ok(())
    }

    /// Trains `method`, whose variables live in `vs`, on `data`. With
    /// `resume`, continues from the run folder's latest checkpoint.
    pub fn fit(
        &self,
        method: &mut dyn Method,
        vs: &mut VarStore,
        data: &dyn BatchSource,
        resume: bool,
    ) -> Result<TrainSummary> {
        self.fit_with_monitor(method, vs, data, resume, None)
    }

    /// [`Trainer::fit`] with an [`EpochMonitor`] run every
    /// `monitor_every` epochs.
    pub fn fit_with_monitor(
        &self,
        method: &mut dyn Method,
        vs: &mut VarStore,
        data: &dyn BatchSource,
        resume: bool,
        monitor: Option<&dyn EpochMonitor>,
    ) -> Result<TrainSummary> {
        let group = ssl_dist::world();
        let (rank, world) = (group.rank(), group.world_size());
        let main = group.is_main();
        let per_epoch = data.batches_per_epoch();
        if per_epoch == 0 {
            return Err(Error::Config(
                "the data source yields no batch: fewer samples than the batch size?".into(),
            ));
        }
        let accumulate = self.cfg.accumulate.max(1);
        let parts = world * accumulate;
        if !data.batch_size().is_multiple_of(parts) {
            return Err(Error::Config(format!(
                "the batch size {} is not a multiple of {world} rank(s) x --accumulate {accumulate}: each rank's \
                 micro-batches must be equal",
                data.batch_size()
            )));
        }
        let least = method.min_micro_batch();
        if data.batch_size() / parts < least {
            return Err(Error::Config(format!(
                "the batch size {} over {world} rank(s) x --accumulate {accumulate} leaves {} sample(s) per \
                 micro-batch; {} needs at least {least} (batch statistics or in-batch negatives): raise \
                 --batch-size or lower --accumulate",
                data.batch_size(),
                data.batch_size() / parts,
                method.name()
            )));
        }
        check_same_config(group, &self.run_config)?;
        if main {
            std::fs::create_dir_all(&self.run_dir).map_err(|e| Error::io(&self.run_dir, e))?;
        }
        let total_steps = per_epoch * self.cfg.epochs;
        let mut opt = Optimizer::from_var_store(&self.cfg.optimizer, vs);
        let schedule = WarmupCosine {
            base_lr: self.cfg.optimizer.lr,
            final_lr: self.cfg.final_lr,
            warmup_steps: per_epoch * self.cfg.warmup_epochs,
            total_steps,
        };
        let device = self.device;
        let mut step = 0;
        let mut state = LoopState::default();
        let mut probe: Option<OnlineProbe> = None;
        // The latest training features of the epoch, for the collapse figures.
        let mut recent = RecentRows::new(COLLAPSE_ROWS);
        if !resume && main {
            self.clear_previous_run()?;
        }
        if resume {
            if let Some((path, saved, extra)) = self.load_latest(vs, &mut opt)? {
                if saved.step > total_steps {
                    return Err(Error::Checkpoint {
                        path,
                        msg: format!(
                            "it is at step {}, past the {total_steps} steps of this run ({} epochs of {per_epoch}): \
                             resume with at least the original --epochs",
                            saved.step, self.cfg.epochs
                        ),
                    });
                }
                step = saved.step;
                if !saved.trainer.is_null() {
                    state = serde_json::from_value(saved.trainer.clone()).map_err(|e| Error::Checkpoint {
                        path: path.clone(),
                        msg: format!("state.json's trainer state: {e}"),
                    })?;
                }
                let extra: std::collections::HashMap<String, Tensor> =
                    extra.into_iter().map(|(n, t)| (n, t.to_device(device))).collect();
                probe = OnlineProbe::restore(&extra, device, &path)?;
                if let Some(rows) = extra.get("recent.features") {
                    recent.push(rows);
                }
                if main {
                    eprintln!(
                        "resuming from {} (step {step} of {total_steps}, epoch {})",
                        path.display(),
                        step / per_epoch
                    );
                    self.cut_log_back(step)?;
                }
            } else if main {
                eprintln!("--resume: no checkpoint in {}, starting afresh", self.checkpoint_dir().display());
                self.cut_log_back(0)?;
            }
        }
        let variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        group.broadcast_from_rank0(&variables)?;
        let sync = ssl_dist::GradSync::new(group, &variables, ssl_dist::DEFAULT_BUCKET_MB, false)?;
        let mut log = if main { Some(JsonlLog::open(&self.run_dir.join("metrics.jsonl"))?) } else { None };
        let unit = data.sample_unit();
        let bar = progress_bar(total_steps as u64, &format!("{unit}/s"));
        if !main {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        bar.set_position(step as u64);
        let started = Instant::now();
        let mut last_checkpoint = Instant::now();
        let mut samples = 0usize;
        let mut data_wait = 0f64;
        let jobs: Vec<(usize, usize, usize)> = (step..total_steps)
            .flat_map(|s| (0..accumulate).map(move |m| (s / per_epoch, s % per_epoch, m)))
            .collect();
        let mean_over_ranks = |t: &Tensor| -> Result<f64> {
            Ok(if world > 1 {
                group.all_reduce_sum(t)?.double_value(&[]) / world as f64
            } else {
                t.double_value(&[])
            })
        };
        // Whether to stop now: this rank's flag, or any rank's on the steps
        // where the ranks compare them.
        // Whether a stop was asked of this rank (a SIGTERM): with several
        // ranks, agreed on every step with the loss check's all-reduce.
        let stop_asked = || self.stop.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
        // Sum of every step's loss this epoch, on the device: read once
        // per epoch (and at checkpoints), so the epoch mean costs no
        // synchronisation.
        let mut epoch_loss = Tensor::from(state.epoch_loss_sum).to_device(device);

        let interrupted = std::thread::scope(|scope| -> Result<Option<PathBuf>> {
            let (tx, rx) = std::sync::mpsc::sync_channel(2 * accumulate);
            scope.spawn(move || {
                for (epoch, index, micro) in jobs {
                    let part = Part { index: micro * world + rank, count: parts };
                    // Pinned here, off the training thread, so the copy to
                    // a GPU below does not wait for the queued step.
                    if tx.send((epoch, data.part(epoch, index, part).map(|b| b.pinned(device)))).is_err() {
                        break;
                    }
                }
            });
            let mut window = (Instant::now(), 0usize);
            'steps: loop {
                let mut micro = Vec::with_capacity(accumulate);
                let mut epoch = 0;
                for _ in 0..accumulate {
                    // Time blocked on the producer: the data wait.
                    let asked = Instant::now();
                    let Ok((e, batch)) = rx.recv() else { break 'steps };
                    data_wait += asked.elapsed().as_secs_f64();
                    let batch = batch?;
                    samples += data.units(&batch);
                    window.1 += data.units(&batch);
                    micro.push(batch.to_device(device));
                    epoch = e;
                }
                let lr = schedule.lr(step);
                tch::manual_seed(crate::augment::step_seed(self.cfg.seed, rank, step));
                method.before_step(Progress { step, total_steps, epoch, epochs: self.cfg.epochs });
                opt.zero_grad();
                let classes = self.cfg.online_probe_classes;
                let mut probe_step = false;
                // Per micro-batch: keep the features (for the collapse
                // figures, once the step is known to be finite), add the
                // probe's loss.
                let mut step_features: Vec<Tensor> = Vec::new();
                let mut probe_loss = |out: &Output, batch: &Batch| {
                    if let Some(f) = out.features.as_ref().filter(|_| main) {
                        step_features.push(f.detach());
                    }
                    match (classes, &out.features, &batch.labels) {
                        (Some(classes), Some(f), Some(y)) => {
                            let p =
                                probe.get_or_insert_with(|| OnlineProbe::new(f.size()[1], classes, device));
                            if !probe_step {
                                p.opt.zero_grad();
                                probe_step = true;
                            }
                            Some(p.loss(f, y))
                        }
                        _ => None,
                    }
                };
                let local_batch = micro.iter().map(Batch::len).sum::<usize>();
                let done = guard_torch(step + 1, data.batch_size(), local_batch, || {
                    backward_step(method, &micro, group, &sync, self.cfg.bf16, &mut probe_loss)
                })?;
                // The global gradient norm (clipped to `grad_clip`), the same
                // on every rank after synchronisation, and this rank's loss:
                // a step with either non-finite is skipped on every rank.
                let norm = match self.cfg.grad_clip {
                    Some(c) => opt.clip_grad_norm(c),
                    None => opt.grad_norm(),
                };
                let loss_ok = done.loss.isfinite().all().int64_value(&[]) == 1;
                let (losses_ok, stop_agreed) = agree_step(group, loss_ok, stop_asked(), device)?;
                let fault = match (norm.is_finite(), losses_ok) {
                    (true, true) => None,
                    (false, _) => Some("a non-finite gradient norm"),
                    (true, false) => Some("a non-finite loss"),
                };
                // A skipped step's features stay out of the collapse
                // figures: a NaN row would break their SVD.
                if fault.is_none() {
                    for f in &step_features {
                        recent.push(f);
                    }
                }
                if let Some(why) = fault {
                    self.skip_step(vs, step, epoch, why, &mut state, log.as_mut())?;
                    step += 1;
                    bar.set_position(step as u64);
                    if step.is_multiple_of(per_epoch) && state.epoch_steps == 0 {
                        return Err(Error::Diverged {
                            step,
                            msg: format!(
                                "every step of epoch {} was skipped: there is no loss to report",
                                epoch + 1
                            ),
                        });
                    }
                    if !step.is_multiple_of(per_epoch) {
                        continue;
                    }
                } else {
                    state.bad_in_a_row = 0;
                    opt.step(lr);
                    if let Some(p) = probe.as_mut().filter(|_| probe_step) {
                        p.opt.step(1e-3);
                    }
                    method.after_step(step, total_steps);
                    if let Some(e) = ssl_dist::take_deferred_error() {
                        return Err(e.into());
                    }
                    epoch_loss += &done.loss;
                    state.epoch_steps += 1;
                    step += 1;
                }
                let grad_norm = self.cfg.grad_clip.map(|_| norm);
                let last_of_epoch = step % per_epoch == 0;
                if fault.is_none() && (step % self.cfg.log_every.max(1) == 0 || last_of_epoch) {
                    let loss_v = mean_over_ranks(&done.loss)?;
                    let rate = (window.1 * world) as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
                    window = (Instant::now(), 0);
                    let mut rec = json!({"step": step, "epoch": epoch, "loss": loss_v, "lr": lr, "samples_per_s": rate});
                    if let Some(g) = grad_norm {
                        rec["grad_norm"] = json!(g);
                    }
                    for (k, v) in done.metrics {
                        rec[k] = json!(v.double_value(&[]));
                    }
                    if let Some(log) = log.as_mut() {
                        log.write(&rec)?;
                    }
                    bar.set_message(format!("loss {loss_v:.4}  lr {lr:.3e}  {rate:.0}"));
                }
                bar.set_position(step as u64);
                let mut checkpoint_due = false;
                if last_of_epoch {
                    let done = epoch + 1;
                    let final_loss = mean_over_ranks(&epoch_loss)? / state.epoch_steps.max(1) as f64;
                    state.final_loss = Some(final_loss);
                    let _ = epoch_loss.zero_();
                    state.epoch_steps = 0;
                    let every = self.cfg.checkpoint_every;
                    checkpoint_due = done == self.cfg.epochs || (every > 0 && done % every == 0);
                    if main {
                        self.end_epoch(
                            done,
                            step,
                            lr,
                            final_loss,
                            samples,
                            started,
                            unit,
                            &*method,
                            monitor,
                            &mut probe,
                            &mut recent,
                            &mut state,
                            log.as_mut(),
                            &bar,
                        )?;
                    }
                }
                let every_steps = self.cfg.checkpoint_every_steps;
                checkpoint_due |= every_steps > 0 && step % every_steps == 0;
                let minutes = self.cfg.checkpoint_every_minutes;
                checkpoint_due |= minutes > 0.0 && last_checkpoint.elapsed().as_secs_f64() >= 60.0 * minutes;
                // One process reads its flag now; ranks take the agreed one.
                let stopping = if world == 1 { stop_asked() } else { stop_agreed };
                if (checkpoint_due || stopping) && main {
                    if let Some(name) = non_finite_variable(vs) {
                        return Err(Error::Diverged {
                            step,
                            msg: format!(
                                "`{name}` holds non-finite values, so no checkpoint is written; --resume continues \
                                 from the last good one: lower the learning rate, or set a gradient clip"
                            ),
                        });
                    }
                    state.epoch_loss_sum = epoch_loss.double_value(&[]);
                    let mut extra = probe.as_ref().map(OnlineProbe::state_tensors).unwrap_or_default();
                    if let Some(rows) = recent.rows() {
                        extra.push(("recent.features".into(), rows));
                    }
                    if let Some(l) = log.as_ref() {
                        l.sync()?;
                    }
                    let saved = CheckpointState {
                        epoch: step / per_epoch,
                        step,
                        config: self.run_config.clone(),
                        trainer: serde_json::to_value(&state).map_err(|e| Error::Config(e.to_string()))?,
                        files: Default::default(),
                    };
                    checkpoint::save(
                        &self.checkpoint_dir(),
                        vs,
                        &opt,
                        extra,
                        &saved,
                        self.cfg.keep_checkpoints,
                    )?;
                    last_checkpoint = Instant::now();
                }
                if stopping && step < total_steps {
                    return Ok(Some(self.checkpoint_dir().join(checkpoint::folder_name(step))));
                }
            }
            Ok(None)
        })?;
        bar.finish_and_clear();
        if let Some(checkpoint) = interrupted {
            return Err(Error::Interrupted { step, total_steps, checkpoint });
        }
        let wall = started.elapsed().as_secs_f64();
        Ok(TrainSummary {
            epochs: self.cfg.epochs,
            steps: step,
            final_loss: state.final_loss.unwrap_or(f64::NAN),
            train_wall_s: wall,
            samples_per_s: (samples * world) as f64 / wall.max(1e-9),
            data_wait_fraction: data_wait / wall.max(1e-9),
            collapse: state.collapse,
            collapse_warnings: state.collapse_warnings,
            skipped_steps: state.skipped_steps,
        })
    }

    /// Loads the newest good checkpoint (rank 0 picks it, naming any newer
    /// one that failed its checks; every rank loads that one): its path,
    /// state and the loop's tensors, or `None` when there is none.
    #[allow(clippy::type_complexity)]
    fn load_latest(
        &self,
        vs: &mut VarStore,
        opt: &mut Optimizer,
    ) -> Result<Option<(PathBuf, CheckpointState, Vec<(String, Tensor)>)>> {
        let group = ssl_dist::world();
        let (rank, world) = (group.rank(), group.world_size());
        let dir = self.checkpoint_dir();
        // Rank 0's choice as a number every rank can receive: the step of a
        // `step-N` folder, -1 for none, -2 when rank 0 failed (it returns
        // the error; the others must not wait for it), -3 - N for an older
        // `epoch-N` folder.
        let mut chosen: Result<Option<(PathBuf, CheckpointState)>> = Ok(None);
        let mut code = -1i64;
        if group.is_main() {
            chosen = self.pick_checkpoint(&dir);
            code = match &chosen {
                Err(_) => -2,
                Ok(None) => -1,
                Ok(Some((path, _))) => {
                    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    match (name.strip_prefix("step-"), name.strip_prefix("epoch-")) {
                        (Some(s), _) => s.parse::<i64>().unwrap_or(-1),
                        (_, Some(e)) => -3 - e.parse::<i64>().unwrap_or(-1),
                        _ => -1,
                    }
                }
            };
        }
        let code_t = Tensor::from(code);
        group.broadcast_(&code_t, 0)?;
        let verified = chosen?;
        let name = match code_t.int64_value(&[]) {
            -1 => return Ok(None),
            -2 => {
                return Err(Error::Checkpoint {
                    path: dir,
                    msg: format!("rank {rank} of {world}: rank 0 could not pick a checkpoint to resume from"),
                })
            }
            s if s >= 0 => checkpoint::folder_name(s as usize),
            e => format!("epoch-{:04}", -3 - e),
        };
        let path = dir.join(name);
        // Rank 0 checked the files while picking; the others check their
        // own view of them.
        let loaded = match verified {
            Some((_, state)) => checkpoint::load_verified(&path, state, vs, opt),
            None => checkpoint::load(&path, vs, opt),
        };
        let (state, extra) = loaded.map_err(|err| match world {
            1 => err,
            _ => Error::Checkpoint {
                path: path.clone(),
                msg: format!(
                    "rank {rank} of {world} cannot load rank 0's checkpoint (every rank reads it: put the run folder \
                     on a filesystem they share): {err}"
                ),
            },
        })?;
        Ok(Some((path, state, extra)))
    }

    /// Rank 0's pick: the newest checkpoint in `dir` that passes its
    /// checks, with its state, after a warning for each newer one skipped;
    /// an error when some exist and none passes.
    fn pick_checkpoint(&self, dir: &Path) -> Result<Option<(PathBuf, CheckpointState)>> {
        let found = checkpoint::find_resumable(dir)?;
        for why in &found.skipped {
            eprintln!("warning: --resume skips a checkpoint that fails its checks: {why}");
        }
        match (found.path, found.state) {
            (Some(path), Some(state)) => Ok(Some((path, state))),
            _ if found.skipped.is_empty() => Ok(None),
            _ => Err(Error::Checkpoint {
                path: dir.to_path_buf(),
                msg: format!(
                    "no checkpoint passes its checks (each is listed above); start afresh without --resume: {}",
                    found.skipped.join("; ")
                ),
            }),
        }
    }

    /// Drops the rows of `metrics.jsonl` after `step` (and a last line cut
    /// short by a kill), so a resumed run logs each step once.
    fn cut_log_back(&self, step: usize) -> Result<()> {
        let path = self.run_dir.join("metrics.jsonl");
        if !path.exists() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let (mut kept, mut dropped, mut broken) = (String::new(), 0usize, 0usize);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line).ok().and_then(|v| v["step"].as_u64()) {
                Some(s) if s as usize <= step => {
                    kept.push_str(line);
                    kept.push('\n');
                }
                Some(_) => dropped += 1,
                None => broken += 1,
            }
        }
        if dropped + broken > 0 {
            eprintln!(
                "{}: dropping {dropped} row(s) after step {step}, which the resumed run writes again{}",
                path.display(),
                if broken > 0 {
                    format!(", and {broken} unreadable row(s) (cut short by a kill?)")
                } else {
                    String::new()
                }
            );
            crate::metrics::write_atomic(&path, kept.as_bytes())?;
        }
        Ok(())
    }

    /// Records a skipped step (0-based `step`): counts it, logs it, and
    /// fails when too many came in a row or when the step's forward pass
    /// left a non-finite value in a buffer (BatchNorm statistics, a queue,
    /// a centre), which skipping the update cannot undo.
    fn skip_step(
        &self,
        vs: &VarStore,
        step: usize,
        epoch: usize,
        why: &str,
        state: &mut LoopState,
        log: Option<&mut JsonlLog>,
    ) -> Result<()> {
        state.skipped_steps += 1;
        state.bad_in_a_row += 1;
        let n = step + 1;
        if let Some(log) = log {
            log.write(&json!({"step": n, "epoch": epoch, "skipped": why}))?;
        }
        if ssl_dist::world().is_main() {
            eprintln!("warning: step {n} skipped: {why} ({} skipped in all)", state.skipped_steps);
        }
        // Buffers can differ between ranks (BatchNorm statistics without
        // --sync-bn), so the ranks agree on the check and stop together.
        let bad = non_finite_variable(vs);
        if !ranks_agree(ssl_dist::world(), bad.is_none(), self.device)? {
            let place = match bad {
                Some(name) => format!("`{name}`"),
                None => "a buffer of another rank".to_string(),
            };
            return Err(Error::Diverged {
                step: n,
                msg: format!(
                    "{why}, and its forward pass left non-finite values in {place}, which skipping the update \
                     cannot undo; --resume continues from the last checkpoint: lower the learning rate, or set a \
                     gradient clip"
                ),
            });
        }
        if state.bad_in_a_row >= self.cfg.max_skipped_in_a_row.max(1) {
            return Err(Error::Diverged {
                step: n,
                msg: format!(
                    "{} steps in a row (to step {n}) had a non-finite loss or gradient: lower the learning rate, set a \
                     gradient clip, or turn bf16 off",
                    state.bad_in_a_row
                ),
            });
        }
        Ok(())
    }

    /// Rank 0's end of an epoch: the probe's accuracy, the collapse
    /// figures and alarm, the epoch monitor, the epoch row and line.
    #[allow(clippy::too_many_arguments)]
    fn end_epoch(
        &self,
        done: usize,
        step: usize,
        lr: f64,
        final_loss: f64,
        samples: usize,
        started: Instant,
        unit: &str,
        method: &dyn Method,
        monitor: Option<&dyn EpochMonitor>,
        probe: &mut Option<OnlineProbe>,
        recent: &mut RecentRows,
        state: &mut LoopState,
        log: Option<&mut JsonlLog>,
        bar: &indicatif::ProgressBar,
    ) -> Result<()> {
        let world = ssl_dist::world().world_size();
        let mut line = format!(
            "epoch {done}/{}  loss {final_loss:.4}  lr {lr:.3e}  {:.0} {unit}/s",
            self.cfg.epochs,
            (samples * world) as f64 / started.elapsed().as_secs_f64()
        );
        let mut rec = json!({"epoch": done, "step": step, "epoch_loss": final_loss});
        if let Some(p) = probe.as_mut() {
            let acc = p.take_accuracy();
            rec["online_probe_top1"] = json!(acc);
            line += &format!("  online probe {:.1}%", 100.0 * acc);
        }
        let mut warning = None;
        if let Some(f) = recent.take() {
            let c = collapse_stats(&f);
            rec["rankme"] = json!(c.rankme);
            rec["normalized_std"] = json!(c.normalized_std);
            line += &format!("  rank {:.1}/{}", c.rankme, c.dim);
            warning = state.alarm.check(done, &c);
            state.collapse = Some(c);
        }
        let every = self.cfg.monitor_every.max(1);
        if let Some(m) = monitor.filter(|_| done.is_multiple_of(every) || done == self.cfg.epochs) {
            for (k, v) in m.evaluate(method)? {
                rec[k] = json!(v);
                // Accuracies as percentages; anything else as is.
                line += &if k.ends_with("top1") || k.ends_with("acc") {
                    format!("  {k} {:.1}%", 100.0 * v)
                } else {
                    format!("  {k} {v:.4}")
                };
            }
        }
        if let Some(log) = log {
            log.write(&rec)?;
        }
        if let Some(w) = warning {
            line = format!("{line}\n{w}");
            state.collapse_warnings.push(w);
        }
        if bar.is_hidden() {
            eprintln!("{line}")
        } else {
            bar.println(line)
        }
        Ok(())
    }
}

/// The name of a variable of `vs` holding a NaN or an infinity, if any.
fn non_finite_variable(vs: &VarStore) -> Option<String> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        vars.into_iter()
            .find(|(_, t)| t.is_floating_point() && t.isfinite().all().int64_value(&[]) == 0)
            .map(|(n, _)| n)
    })
}

/// Whether `ok` holds on every rank (one all-reduce with several ranks).
/// One all-reduce a step: whether every rank's loss is finite, and
/// whether any rank was asked to stop (so that all stop after the same
/// step, whatever `--log-every`).
fn agree_step(
    group: &ssl_dist::Group,
    loss_ok: bool,
    stop: bool,
    device: tch::Device,
) -> Result<(bool, bool)> {
    if !group.is_distributed() {
        return Ok((loss_ok, stop));
    }
    let flags =
        Tensor::from_slice(&[f64::from(u8::from(!loss_ok)), f64::from(u8::from(stop))]).to_device(device);
    let sum = group.all_reduce_sum(&flags)?.to_device(tch::Device::Cpu);
    Ok((sum.double_value(&[0]) == 0.0, sum.double_value(&[1]) > 0.0))
}

fn ranks_agree(group: &ssl_dist::Group, ok: bool, device: tch::Device) -> Result<bool> {
    if !group.is_distributed() {
        return Ok(ok);
    }
    let bad = Tensor::from(f64::from(u8::from(!ok))).to_device(device);
    Ok(group.all_reduce_sum(&bad)?.double_value(&[]) == 0.0)
}

/// Runs one step's forward and backward passes, turning a libtorch
/// failure that tch raises as a panic (a CUDA out-of-memory, a kernel
/// error) into an error naming the step and the batch, with what to try.
/// `step` is 1-based; `global` is the batch size over the ranks, `local`
/// this rank's samples in the step.
fn guard_torch<T>(step: usize, global: usize, local: usize, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = crate::error::panic_message(payload.as_ref());
            // CUDA's and the CPU allocator's words for it.
            let oom = ["out of memory", "OutOfMemory", "can't allocate memory", "not enough memory"]
                .iter()
                .any(|w| msg.contains(w));
            let advice = if oom {
                "the device ran out of memory: lower --batch-size, or keep it and raise --accumulate to cut each \
                 step into smaller micro-batches"
            } else {
                "libtorch failed inside the step"
            };
            Err(Error::Step {
                step,
                detail: format!(
                    "{advice} (batch size {global} over the ranks, {local} on this rank per step): {}",
                    msg.lines().next().unwrap_or_default()
                ),
            })
        }
    }
}

/// What [`backward_step`] leaves besides the gradients.
pub struct StepLoss {
    /// This rank's share of the step's loss, detached: the weighted sum over
    /// its micro-batches. Its mean over the ranks is the step's loss.
    pub loss: Tensor,
    /// The method's metrics of the last micro-batch.
    pub metrics: Metrics,
}

/// Forward and backward passes of one optimizer step on this rank: the
/// rank's micro-batches of the global batch, each loss weighted so that the
/// gradients (after the Reducer averages them over the ranks on the last
/// micro-batch's backward) are those of the step's loss on the whole
/// global batch: `1 / micro-batches` each, or, for a method with
/// [`Method::loss_items`], `world_size * items / items of every rank and
/// micro-batch`. `extra` adds a loss per micro-batch that is not
/// synchronised (the online probe), scaled by `1 / micro-batches`.
///
/// The trainer runs every step through it; the distributed gradient tests
/// of each method call it directly.
pub fn backward_step(
    method: &dyn Method,
    micro: &[Batch],
    group: &ssl_dist::Group,
    sync: &ssl_dist::GradSync,
    bf16: bool,
    extra: &mut dyn FnMut(&Output, &Batch) -> Option<Tensor>,
) -> Result<StepLoss> {
    let a = micro.len().max(1);
    let counts: Option<Vec<Tensor>> = micro.iter().map(|b| method.loss_items(b)).collect();
    let scales: Vec<Option<Tensor>> = match counts {
        Some(counts) => {
            let local: Vec<Tensor> = counts.iter().map(|c| c.detach().to_kind(Kind::Double)).collect();
            let total = group.all_reduce_sum(&Tensor::stack(&local, 0).sum(Kind::Double))?;
            let w = group.world_size() as f64;
            local.iter().map(|c| Some(c * w / &total)).collect()
        }
        None if a == 1 => vec![None],
        None => (0..a).map(|_| Some(Tensor::from(1.0 / a as f64))).collect(),
    };
    let mut loss_sum: Option<Tensor> = None;
    let mut metrics = Vec::new();
    for (m, (batch, scale)) in micro.iter().zip(&scales).enumerate() {
        let last = m + 1 == micro.len();
        if last {
            sync.prepare_forward()?;
        }
        let out = crate::amp::bf16_autocast(bf16, || method.loss(batch, true))?;
        if let Some(e) = ssl_dist::take_deferred_error() {
            return Err(e.into());
        }
        let loss = match scale {
            Some(s) => &out.loss * s.to_device(out.loss.device()).to_kind(out.loss.kind()),
            None => out.loss.shallow_clone(),
        };
        let total = match extra(&out, batch) {
            Some(e) if a > 1 => &loss + e / a as f64,
            Some(e) => &loss + e,
            None => loss.shallow_clone(),
        };
        if last {
            sync.prepare_backward(&[&total])?;
        }
        total.f_backward().map_err(|e| match group.is_distributed() {
            true => Error::Dist(
                group.failure("backward (gradient synchronisation or a gathered loss)", e.to_string()),
            ),
            false => Error::Torch(e),
        })?;
        if let Some(e) = ssl_dist::take_deferred_error() {
            return Err(e.into());
        }
        let l = loss.detach().to_kind(Kind::Double);
        loss_sum = Some(match loss_sum {
            Some(s) => s + l,
            None => l,
        });
        metrics = out.metrics;
    }
    Ok(StepLoss {
        loss: loss_sum.unwrap_or_else(|| Tensor::zeros([], (Kind::Double, tch::Device::Cpu))),
        metrics,
    })
}

/// Keys of the resolved config that may differ between ranks (the device
/// of each rank, its thread count).
const PER_RANK_KEYS: [&str; 2] = ["device", "torch_threads"];

/// Checks that every rank was started with the same resolved config: each
/// rank publishes its config in the rendezvous store, rank 0 compares them
/// and publishes the verdict, and on a difference every rank fails with
/// the ranks and keys that differ.
pub fn check_same_config(group: &ssl_dist::Group, config: &Value) -> Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    if !group.is_distributed() {
        return Ok(());
    }
    let call = CALLS.fetch_add(1, Ordering::SeqCst);
    let mine = flatten_config(config);
    let text = serde_json::to_vec(&mine).map_err(|e| Error::Config(e.to_string()))?;
    group.store_set(&format!("config/{call}/{}", group.rank()), &text)?;
    let verdict_key = format!("config/{call}/verdict");
    if group.is_main() {
        let mut problems = Vec::new();
        for r in 1..group.world_size() {
            let theirs: std::collections::BTreeMap<String, String> =
                serde_json::from_slice(&group.store_get(&format!("config/{call}/{r}"))?)
                    .map_err(|e| Error::Config(format!("rank {r}'s config: {e}")))?;
            let keys: std::collections::BTreeSet<&String> = mine.keys().chain(theirs.keys()).collect();
            let differ: Vec<String> = keys
                .into_iter()
                .filter(|k| mine.get(*k) != theirs.get(*k))
                .map(|k| {
                    let show = |v: Option<&String>| v.map_or("(absent)".to_string(), |v| v.clone());
                    format!("{k}: {} on rank 0, {} on rank {r}", show(mine.get(k)), show(theirs.get(k)))
                })
                .collect();
            if !differ.is_empty() {
                problems.push(format!("rank {r} differs from rank 0 in {}", differ.join("; ")));
            }
        }
        group.store_set(&verdict_key, problems.join(". ").as_bytes())?;
    }
    let verdict = String::from_utf8_lossy(&group.store_get(&verdict_key)?).into_owned();
    if verdict.is_empty() {
        return Ok(());
    }
    Err(Error::Dist(ssl_dist::Error::Mismatch {
        rank: group.rank(),
        world: group.world_size(),
        detail: format!("the ranks were started with different configurations: {verdict}"),
    }))
}

/// A config as `path.to.key -> value` pairs, without [`PER_RANK_KEYS`].
fn flatten_config(config: &Value) -> std::collections::BTreeMap<String, String> {
    fn walk(prefix: &str, v: &Value, out: &mut std::collections::BTreeMap<String, String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    if prefix.is_empty() && PER_RANK_KEYS.contains(&k.as_str()) {
                        continue;
                    }
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk("", config, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn a_step_that_fails_in_libtorch_names_the_step_and_what_to_try() {
        let cpu = (Kind::Float, Device::Cpu);
        // 2^61 bytes: more than any address space, so the allocation fails
        // on every machine, whatever its overcommit setting.
        let err = guard_torch(3, 64, 32, || Ok(Tensor::zeros([1i64 << 59], cpu))).unwrap_err().to_string();
        assert!(err.starts_with("step 3 failed: the device ran out of memory: lower --batch-size"), "{err}");
        assert!(err.contains("(batch size 64 over the ranks, 32 on this rank per step)"), "{err}");
        let err = guard_torch(1, 8, 8, || -> Result<()> {
            panic!("CUDA out of memory. Tried to allocate 2.00 GiB")
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("ran out of memory") && err.ends_with("Tried to allocate 2.00 GiB"), "{err}");
        let shapes = || Ok(Tensor::zeros([2, 3], cpu).matmul(&Tensor::zeros([2, 3], cpu)));
        let err = guard_torch(1, 8, 8, shapes).unwrap_err().to_string();
        assert!(err.contains("libtorch failed inside the step") && !err.contains("out of memory"), "{err}");
    }
}

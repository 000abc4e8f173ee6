//! The training loop: batches from a [`BatchSource`] (built on a producer
//! thread, so augmentation overlaps compute), a [`Method`]'s loss, backward,
//! gradient clipping, the optimizer with a warmup + cosine schedule, the
//! method's after-step hook (EMA), JSONL metrics, a progress bar, and atomic
//! checkpoints that `resume` continues from.
//!
//! Two monitors, as solo-learn has: an online linear probe trained on the
//! detached features of each batch (it never changes the encoder), and an
//! [`EpochMonitor`] (a kNN classifier, say) run every few epochs.

use crate::checkpoint::{self, CheckpointState};
use crate::method::{BatchSource, Method};
use crate::metrics::{progress_bar, JsonlLog};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::schedule::WarmupCosine;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
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
    /// Samples per second over this invocation.
    pub samples_per_s: f64,
    /// Fraction of the training wall time the loop spent blocked waiting
    /// for the next batch from the producer thread (0: data never held the
    /// device up). On CUDA, kernels run asynchronously, so a step's device
    /// work overlaps the wait until the next synchronisation (every logged
    /// step reads the loss).
    pub data_wait_fraction: f64,
}

/// Trains one method on one device into one run folder.
pub struct Trainer {
    cfg: TrainConfig,
    device: tch::Device,
    run_dir: PathBuf,
    /// The whole resolved config of the run, saved in checkpoints.
    run_config: Value,
}

impl Trainer {
    /// A trainer writing `metrics.jsonl` and `checkpoints/` under `run_dir`.
    pub fn new(cfg: TrainConfig, device: tch::Device, run_dir: &Path, run_config: Value) -> Self {
        Self { cfg, device, run_dir: run_dir.to_path_buf(), run_config }
    }

    /// The checkpoint folder.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.run_dir.join("checkpoints")
    }

    /// A fresh (not resumed) run into a folder that holds an earlier run's
    /// checkpoints and log starts over: they are removed, with a notice,
    /// so that neither `--resume` nor the log mixes two runs.
    fn clear_previous_run(&self) -> Result<()> {
        let ckpt = self.checkpoint_dir();
        let log = self.run_dir.join("metrics.jsonl");
        if ckpt.exists() || log.exists() {
            eprintln!(
                "{} holds an earlier run: removing its checkpoints and metrics.jsonl (pass --resume to continue it instead)",
                self.run_dir.display()
            );
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
    /// `monitor_every` epochs. The online probe and libtorch's random
    /// generator (MAE's masks) are not checkpointed: a resumed run starts a
    /// fresh probe and draws other masks; the data order and views, seeded
    /// per epoch and sample, are the same.
    pub fn fit_with_monitor(
        &self,
        method: &mut dyn Method,
        vs: &mut VarStore,
        data: &dyn BatchSource,
        resume: bool,
        monitor: Option<&dyn EpochMonitor>,
    ) -> Result<TrainSummary> {
        let per_epoch = data.batches_per_epoch();
        if per_epoch == 0 {
            return Err(Error::Config(
                "the data source yields no batch: fewer samples than the batch size?".into(),
            ));
        }
        std::fs::create_dir_all(&self.run_dir).map_err(|e| Error::io(&self.run_dir, e))?;
        let total_steps = per_epoch * self.cfg.epochs;
        let mut opt = Optimizer::from_var_store(&self.cfg.optimizer, vs);
        let schedule = WarmupCosine {
            base_lr: self.cfg.optimizer.lr,
            final_lr: self.cfg.final_lr,
            warmup_steps: per_epoch * self.cfg.warmup_epochs,
            total_steps,
        };
        let (mut start_epoch, mut step) = (0, 0);
        if !resume {
            self.clear_previous_run()?;
        }
        if resume {
            match checkpoint::latest(&self.checkpoint_dir())? {
                Some(path) => {
                    let state = checkpoint::load(&path, vs, &mut opt)?;
                    (start_epoch, step) = (state.epoch, state.step);
                    eprintln!(
                        "resuming from {} (epoch {}, step {})",
                        path.display(),
                        state.epoch,
                        state.step
                    );
                }
                None => eprintln!(
                    "--resume: no checkpoint in {}, starting afresh",
                    self.checkpoint_dir().display()
                ),
            }
        }
        let mut log = JsonlLog::open(&self.run_dir.join("metrics.jsonl"))?;
        let unit = data.sample_unit();
        let bar = progress_bar(total_steps as u64, &format!("{unit}/s"));
        bar.set_position(step as u64);
        let started = Instant::now();
        let mut samples = 0usize;
        let mut data_wait = 0f64;
        let mut final_loss = f64::NAN;
        let device = self.device;
        let mut probe: Option<OnlineProbe> = None;
        let jobs: Vec<(usize, usize)> =
            (start_epoch..self.cfg.epochs).flat_map(|e| (0..per_epoch).map(move |i| (e, i))).collect();

        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel(2);
            scope.spawn(move || {
                for (epoch, index) in jobs {
                    // Pinned here, off the training thread, so the copy to
                    // a GPU below does not wait for the queued step.
                    if tx.send((epoch, data.batch(epoch, index).map(|b| b.pinned(device)))).is_err() {
                        break;
                    }
                }
            });
            // Sum of every step's loss this epoch, on the device: read once
            // per epoch, so the epoch mean costs no synchronisation.
            let mut epoch_loss = Tensor::zeros([], (Kind::Double, device));
            let mut epoch_steps = 0usize;
            let mut window = (Instant::now(), 0usize);
            loop {
                // Time blocked on the producer: the data wait.
                let asked = Instant::now();
                let Ok((epoch, batch)) = rx.recv() else { break };
                data_wait += asked.elapsed().as_secs_f64();
                let batch = batch?;
                let n = data.units(&batch);
                let batch = batch.to_device(device);
                let lr = schedule.lr(step);
                opt.zero_grad();
                let out = crate::amp::bf16_autocast(self.cfg.bf16, || method.loss(&batch, true));
                let (loss, extra) = (out.loss, out.metrics);
                let probe_loss = match (self.cfg.online_probe_classes, &out.features, &batch.labels) {
                    (Some(classes), Some(f), Some(y)) => {
                        let p = probe.get_or_insert_with(|| OnlineProbe::new(f.size()[1], classes, device));
                        p.opt.zero_grad();
                        Some(p.loss(f, y))
                    }
                    _ => None,
                };
                match &probe_loss {
                    Some(pl) => (&loss + pl).backward(),
                    None => loss.backward(),
                }
                let grad_norm = self.cfg.grad_clip.map(|c| opt.clip_grad_norm(c));
                opt.step(lr);
                if let Some(p) = probe.as_mut().filter(|_| probe_loss.is_some()) {
                    p.opt.step(1e-3);
                }
                method.after_step(step, total_steps);
                epoch_loss += loss.detach().to_kind(Kind::Double);
                epoch_steps += 1;
                step += 1;
                samples += n;
                window.1 += n;
                let last_of_epoch = step % per_epoch == 0;
                if step % self.cfg.log_every.max(1) == 0 || last_of_epoch {
                    let loss_v = loss.double_value(&[]);
                    if !loss_v.is_finite() {
                        return Err(Error::Data(format!(
                            "loss is {loss_v} at step {step}: lower the learning rate?"
                        )));
                    }
                    let rate = window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
                    window = (Instant::now(), 0);
                    let mut rec = json!({"step": step, "epoch": epoch, "loss": loss_v, "lr": lr, "samples_per_s": rate});
                    if let Some(g) = grad_norm {
                        rec["grad_norm"] = json!(g);
                    }
                    for (k, v) in extra {
                        rec[k] = json!(v.double_value(&[]));
                    }
                    log.write(&rec)?;
                    bar.set_message(format!("loss {loss_v:.4}  lr {lr:.3e}  {rate:.0}"));
                }
                bar.set_position(step as u64);
                if last_of_epoch {
                    let done = epoch + 1;
                    final_loss = epoch_loss.double_value(&[]) / epoch_steps.max(1) as f64;
                    let mut line = format!(
                        "epoch {done}/{}  loss {final_loss:.4}  lr {lr:.3e}  {:.0} {unit}/s",
                        self.cfg.epochs,
                        samples as f64 / started.elapsed().as_secs_f64()
                    );
                    let mut rec = json!({"epoch": done, "step": step, "epoch_loss": final_loss});
                    if let Some(p) = probe.as_mut() {
                        let acc = p.take_accuracy();
                        rec["online_probe_top1"] = json!(acc);
                        line += &format!("  online probe {:.1}%", 100.0 * acc);
                    }
                    let every = self.cfg.monitor_every.max(1);
                    if let Some(m) = monitor.filter(|_| done % every == 0 || done == self.cfg.epochs) {
                        for (k, v) in m.evaluate(&*method)? {
                            rec[k] = json!(v);
                            // Accuracies as percentages; anything else as is.
                            line += &if k.ends_with("top1") || k.ends_with("acc") {
                                format!("  {k} {:.1}%", 100.0 * v)
                            } else {
                                format!("  {k} {v:.4}")
                            };
                        }
                    }
                    log.write(&rec)?;
                    if bar.is_hidden() {
                        eprintln!("{line}")
                    } else {
                        bar.println(line)
                    }
                    let _ = epoch_loss.zero_();
                    epoch_steps = 0;
                    let every = self.cfg.checkpoint_every;
                    if done == self.cfg.epochs || (every > 0 && done % every == 0) {
                        let state = CheckpointState { epoch: done, step, config: self.run_config.clone() };
                        checkpoint::save(
                            &self.checkpoint_dir(),
                            vs,
                            &opt,
                            &state,
                            self.cfg.keep_checkpoints,
                        )?;
                    }
                }
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        let wall = started.elapsed().as_secs_f64();
        Ok(TrainSummary {
            epochs: self.cfg.epochs,
            steps: step,
            final_loss,
            train_wall_s: wall,
            samples_per_s: samples as f64 / wall.max(1e-9),
            data_wait_fraction: data_wait / wall.max(1e-9),
        })
    }
}

//! ssl-cli: the options every `train-*` binary shares, as one clap group
//! ([`RunArgs`], flattened into each binary's arguments), and [`RunArgs::start`],
//! which turns them into a started run: the process group from torchrun's
//! environment (a world of one without it), the device of this rank, the
//! seed, synchronised BatchNorm. Binaries keep only what differs: their
//! data, methods and help texts (`#[command(mut_arg(…))]` rewords a shared
//! option where its meaning differs, such as the default run folder).
//!
//! [`EmbedArgs`] does the same for the `embed-*` binaries. [`finish_run`]
//! is the end of the experiment flow the binaries share (pretrain, evaluate
//! against random initialisation, fine-tune on fractions of the labels with
//! `ssl_core::finetune::over_fractions`, report).
//!
//! Libraries never parse flags; this crate is the one place that does for
//! what the binaries share.

pub mod config_file;
pub mod embed;
pub mod testing;

pub use embed::EmbedArgs;

use clap::Args;
use serde::Serialize;
use ssl_core::device::{device_name, parse_device, seed_everything};
use ssl_core::metrics::write_json_atomic;
use ssl_core::seeds::SeedSpec;
use ssl_core::{Error, Result};
use ssl_dist::{CudaBackend, Group, GroupOptions, Launch};
use std::path::PathBuf;
use std::time::Duration;
use tch::Device;

/// The run options every training binary shares.
#[derive(Args, Debug, Clone, Serialize)]
pub struct RunArgs {
    /// auto | cpu | cuda | cuda:N. With several ranks, auto and cuda mean
    /// cuda:LOCAL_RANK (one GPU per rank).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Run folder (config.json, metrics.jsonl, checkpoints/, report.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from the run folder's latest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Seed for weights, shuffling, augmentation and masks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Repeat the run with seeds SEED, SEED+1, …, SEED+N-1, one after
    /// another, each in `OUT/seed-S/`; `OUT/report.json` then gives each
    /// figure's mean and standard deviation over the seeds, and of the
    /// paired difference to the baseline (random initialisation, or
    /// training from scratch) with the same seed.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: u64,
    /// Checkpoint every N epochs (the last one always).
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Also checkpoint every N optimizer steps, mid-epoch too (0: off);
    /// `--resume` continues from the exact batch.
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every_steps: usize,
    /// Also checkpoint once M minutes of training have passed since the
    /// last checkpoint (0: off).
    #[arg(long, default_value_t = 0.0, value_parser = non_negative_minutes)]
    pub checkpoint_every_minutes: f64,
    /// Disable bf16 autocast on CUDA.
    #[arg(long)]
    pub no_bf16: bool,
    /// Warmup epochs: the learning rate rises linearly to its peak over
    /// them, then decays by cosine; at most --epochs minus 1, so that at
    /// least one epoch decays. Default: train-vision the method's recipe
    /// (2; SimSiam 10), train-audio 2, train-text 1.
    #[arg(long)]
    pub warmup_epochs: Option<usize>,
    /// Write the loss, learning rate and throughput to metrics.jsonl every
    /// N optimizer steps (the epoch figures are written at each epoch's
    /// end); with several ranks, a stop signal is also agreed on then.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_every: u64,
    /// Gradient accumulation: cut each step's batch into N micro-batches
    /// whose gradients add up (less memory; the same samples per step).
    /// `--batch-size` stays the samples per optimizer step, over all ranks.
    /// Losses over in-batch negatives (simclr, moco-v3, cola) then compare
    /// each sample with the negatives of its micro-batch only: N times fewer.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub accumulate: u64,
    /// Synchronised BatchNorm: with several ranks, BatchNorm layers
    /// normalise with the statistics of the whole global batch (PyTorch's
    /// SyncBatchNorm) instead of each rank's part (DDP's default).
    #[arg(long)]
    pub sync_bn: bool,
    /// Seconds a collective (or the rendezvous) may wait for the other
    /// ranks before the run stops with an error naming them.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub dist_timeout: u64,
    /// The backend for CUDA tensors with several ranks: auto (NCCL when
    /// built with it, else Gloo), nccl, or gloo (lets ranks share a GPU).
    #[arg(long, default_value = "auto")]
    pub dist_backend: String,
    /// Replace a field of the method's config (as written under `model` in
    /// config.json), e.g. `--set out=256 --set head_batch_norm=true`;
    /// repeatable; nested fields by dots. Values are JSON, or a string. An
    /// unknown field is an error listing the known ones. The encoder's own
    /// fields are set by the binary's flags, not here (the random-init
    /// baseline must match it).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<ssl_core::config::Override>,
    /// Read options from a TOML (`.toml`) or JSON file: keys are the
    /// options' names (`batch-size = 64`, `set = ["out=256"]`), and flags
    /// given beside it override them. A run's own `config.json` repeats
    /// that run (`--config runs/X/config.json`; it reads the `args` the
    /// run recorded). Unknown keys and wrong types are errors naming the
    /// file and key.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the resolved config (what `config.json` would hold, with the
    /// options under `args`) and stop before training: no model is trained
    /// and no config, checkpoint or report is written. The data is still
    /// read (the config depends on it), so the bundled sets are written out
    /// where a run reads them, and train-text trains its tokenizer.
    #[arg(long)]
    pub print_config: bool,
}

/// A started run: where this rank trains and with whom.
pub struct Run {
    /// This rank's device.
    pub device: Device,
    /// The process group (`ssl_dist::world()`).
    pub group: &'static Group,
    /// The seed.
    pub seed: u64,
}

impl Run {
    /// Rank 0: prints, writes files, evaluates.
    pub fn is_main(&self) -> bool {
        self.group.is_main()
    }

    /// `cpu`, `cuda:N`, and with several ranks `(rank R of W)`.
    pub fn describe(&self) -> String {
        let d = device_name(self.device);
        if self.group.is_distributed() {
            format!("{d} (rank {} of {})", self.group.rank(), self.group.world_size())
        } else {
            d
        }
    }

    /// With `--resume` and `--seeds` above 1 (and no `--print-config`), a
    /// seed whose folder `dir` holds its `report.json` finished before the
    /// sweep was stopped: it is kept, not trained and evaluated again
    /// (which would also replace its wall time by the re-evaluation's).
    /// Rank 0 reads the folder and tells the other ranks. A `report.json`
    /// that does not parse is an error naming it; delete the seed's folder
    /// to run it again.
    pub fn earlier_seed(&self, args: &RunArgs, dir: &std::path::Path) -> Result<EarlierSeed> {
        if !args.resume || args.seeds <= 1 || args.print_config {
            return Ok(EarlierSeed::Train);
        }
        let path = dir.join("report.json");
        let report = if self.is_main() && path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let report: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Error::Config(format!(
                    "{}: {e}; it is not a finished seed's report: delete the seed's folder to run it again",
                    path.display()
                ))
            })?;
            Some(report)
        } else {
            None
        };
        let done = tch::Tensor::from(i64::from(report.is_some()));
        self.group.broadcast_(&done, 0)?;
        if done.int64_value(&[]) == 0 {
            return Ok(EarlierSeed::Train);
        }
        if self.is_main() {
            eprintln!("seed {}: {} is from a finished run; kept, not run again", self.seed, path.display());
        }
        Ok(EarlierSeed::Finished(report.map(|report| Finished { dir: dir.to_path_buf(), report })))
    }
}

impl RunArgs {
    /// Joins the other ranks (when launched by torchrun or `cargo xtask …
    /// --nproc-per-node`), picks this rank's device, turns on synchronised
    /// BatchNorm when asked, and seeds libtorch. Call it once, first.
    pub fn start(&self) -> Result<Run> {
        let launch = Launch::from_env()?;
        let device = self.device_for(launch.as_ref().map(|l| l.local_rank))?;
        let cuda_backend = match self.dist_backend.as_str() {
            "auto" => CudaBackend::Auto,
            "nccl" => CudaBackend::Nccl,
            "gloo" => CudaBackend::Gloo,
            o => {
                return Err(Error::Config(format!(
                    "unknown --dist-backend `{o}`; expected auto, nccl or gloo"
                )))
            }
        };
        let group = match (&launch, ssl_dist::initialized_world()) {
            // A later seed of `--seeds`: the ranks are already joined.
            (_, Some(world)) => {
                ssl_core::modules::set_sync_batch_norm(self.sync_bn);
                seed_everything(self.seed);
                return Ok(Run { device, group: world, seed: self.seed });
            }
            (None, None) => Group::single(),
            (Some(l), None) => {
                let cuda_device = match device {
                    Device::Cuda(i) => Some(i),
                    _ => None,
                };
                let opts = GroupOptions {
                    timeout: Duration::from_secs(self.dist_timeout),
                    cuda_device,
                    cuda_backend,
                };
                Group::connect(l, &opts)?
            }
        };
        let group = ssl_dist::init_world(group)?;
        ssl_core::modules::set_sync_batch_norm(self.sync_bn);
        seed_everything(self.seed);
        Ok(Run { device, group, seed: self.seed })
    }

    /// The device: `--device`, where `auto` and `cuda` become
    /// `cuda:LOCAL_RANK` on a rank of a multi-process run.
    fn device_for(&self, local_rank: Option<usize>) -> Result<Device> {
        let name = self.device.trim().to_ascii_lowercase();
        let Some(local) = local_rank else { return parse_device(&name) };
        let cuda = tch::Cuda::is_available();
        match name.as_str() {
            "auto" if !cuda => Ok(Device::Cpu),
            "auto" | "cuda" | "gpu" => parse_device(&format!("cuda:{local}")).map_err(|e| {
                Error::Config(format!(
                    "{e}: with several ranks on a machine, each rank takes the GPU of its LOCAL_RANK ({local}); \
                     start at most as many ranks per machine as it has GPUs, or pass --dist-backend gloo with an \
                     explicit --device cuda:N to share one"
                ))
            }),
            other => parse_device(other),
        }
    }

    /// The run folder: `--out`, else `default`; with `--seeds` above 1,
    /// its `seed-S` folder.
    pub fn run_dir(&self, default: impl FnOnce() -> PathBuf) -> PathBuf {
        let base = self.out.clone().unwrap_or_else(default);
        if self.seeds > 1 {
            base.join(format!("seed-{}", self.seed))
        } else {
            base
        }
    }

    /// `--checkpoint-every`, or the binary's default.
    pub fn checkpoint_every_or(&self, default: usize) -> usize {
        self.checkpoint_every.unwrap_or(default)
    }

    /// Sets what these options decide in the trainer's config, the same way
    /// in every binary: checkpoint cadence (`--checkpoint-every`, else
    /// `default_every` epochs; `--checkpoint-every-steps`,
    /// `--checkpoint-every-minutes`), seed, `--log-every`, bf16
    /// (`--no-bf16`), `--accumulate`, and the warmup (`--warmup-epochs`,
    /// else `default_warmup`, clamped to `cfg.epochs` by
    /// [`ssl_core::schedule::warmup_epochs`]). Set `cfg.epochs` first.
    pub fn apply_to(
        &self,
        cfg: &mut ssl_core::trainer::TrainConfig,
        default_every: usize,
        default_warmup: usize,
    ) {
        cfg.checkpoint_every = self.checkpoint_every_or(default_every);
        cfg.checkpoint_every_steps = self.checkpoint_every_steps;
        cfg.checkpoint_every_minutes = self.checkpoint_every_minutes;
        cfg.seed = self.seed;
        cfg.log_every = self.log_every as usize;
        cfg.bf16 = !self.no_bf16;
        cfg.accumulate = self.accumulate as usize;
        cfg.warmup_epochs =
            ssl_core::schedule::warmup_epochs(self.warmup_epochs.unwrap_or(default_warmup), cfg.epochs);
    }
}

/// The binary's options: the command line, with `--config FILE` read
/// first ([`config_file`]). A bad file or key ends the process with
/// status 2, as clap does for a bad flag.
pub fn parse<A: clap::Parser>() -> A {
    A::parse_from(argv::<A>())
}

/// The command line with `--config FILE` expanded ([`config_file::expand`]),
/// program name first; ends the process with status 2 on a bad file.
pub fn argv<A: clap::CommandFactory>() -> Vec<std::ffi::OsString> {
    match config_file::expand(&A::command(), std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

/// Records the options a run was started with under `config["args"]`, so
/// that `--config DIR/config.json` starts it again: `args` serialised,
/// less the options that only say how this invocation was read
/// (`config`, `print_config`, `resume`). A run of `--seeds` records its
/// own seed alone, in its own folder `dir`.
pub fn record_args<T: Serialize>(
    config: &mut serde_json::Value,
    args: &T,
    dir: &std::path::Path,
) -> Result<()> {
    let mut v =
        serde_json::to_value(args).map_err(|e| Error::Config(format!("recording the options: {e}")))?;
    if let Some(m) = v.as_object_mut() {
        for k in config_file::META {
            m.remove(k);
        }
        if m.get("seeds").and_then(serde_json::Value::as_u64).is_some_and(|n| n > 1) {
            m.insert("seeds".into(), 1.into());
            m.insert("out".into(), serde_json::json!(dir));
        }
    }
    config["args"] = v;
    Ok(())
}

/// `--print-config`: prints `config` (pretty JSON) to standard output on
/// rank 0 and returns true, for the binary to stop before training.
pub fn print_config(args: &RunArgs, config: &serde_json::Value) -> bool {
    if !args.print_config {
        return false;
    }
    if ssl_dist::world().is_main() {
        println!("{}", serde_json::to_string_pretty(config).unwrap_or_else(|_| config.to_string()));
    }
    true
}

fn non_negative_minutes(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(m) if m >= 0.0 && m.is_finite() => Ok(m),
        _ => Err(format!("`{s}` is not a number of minutes >= 0")),
    }
}

/// The exit status of a run stopped by SIGTERM or SIGINT after writing its
/// checkpoint: 75 (`EX_TEMPFAIL` of sysexits.h: try again, with `--resume`).
pub const EXIT_INTERRUPTED: i32 = 75;

/// The flag a SIGTERM or SIGINT sets, for [`ssl_core::trainer::Trainer::with_stop`]:
/// the trainer finishes its step, writes a checkpoint and stops. A signal
/// more than [`SECOND_SIGNAL_AFTER`] after the first ends the process at
/// once (status 128 + the signal, as the default handler's would); copies
/// of one signal that arrive together (a cluster signals every process,
/// and the launcher forwards its own) count as one. The signals are
/// received on a thread of their own, installed on the first call.
pub fn stop_flag() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, OnceLock};
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    if let Some(f) = FLAG.get() {
        return Ok(f.clone());
    }
    let flag = Arc::new(AtomicBool::new(false));
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| Error::Config(format!("installing the SIGTERM and SIGINT handlers: {e}")))?;
    let set = flag.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut first: Option<std::time::Instant> = None;
            for sig in signals.forever() {
                let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
                match first {
                    None => {
                        first = Some(std::time::Instant::now());
                        set.store(true, Ordering::SeqCst);
                        eprintln!(
                            "\n{name}: finishing this step, then writing a checkpoint and stopping (send it again to \
                             stop at once)"
                        );
                    }
                    Some(t) if t.elapsed() >= SECOND_SIGNAL_AFTER => {
                        eprintln!("\n{name} again: stopping at once, without a checkpoint");
                        std::process::exit(128 + sig);
                    }
                    Some(_) => {}
                }
            }
        })
        .map_err(|e| Error::Config(format!("starting the signal thread: {e}")))?;
    Ok(FLAG.get_or_init(|| flag).clone())
}

/// How long after the first signal another one counts as a second (see
/// [`stop_flag`]).
pub const SECOND_SIGNAL_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The command that resumes this process's run: its own command line (or
/// the launcher's, `SSL_RS_COMMAND` plus the arguments, when `cargo xtask`
/// started it) with `--resume` added, quoted for a POSIX shell.
pub fn resume_command() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Ok(launcher) = std::env::var("SSL_RS_COMMAND") {
        let mut words = shell_words::split(&launcher).unwrap_or_else(|_| vec![launcher.clone()]);
        words.extend(args.drain(1..));
        args = words;
    }
    if !args.iter().any(|a| a == "--resume") {
        args.push("--resume".into());
    }
    shell_words::join(args)
}

/// Ends the process with [`EXIT_INTERRUPTED`] when `err` is the trainer's
/// [`ssl_core::Error::Interrupted`], after rank 0 prints where the
/// checkpoint is and the command that resumes; returns otherwise.
pub fn exit_if_interrupted(err: &anyhow::Error) {
    let found = err.chain().find_map(|e| match e.downcast_ref::<Error>() {
        Some(Error::Interrupted { step, total_steps, checkpoint }) => Some((*step, *total_steps, checkpoint)),
        _ => None,
    });
    let Some((step, total, checkpoint)) = found else { return };
    if ssl_dist::world().is_main() {
        eprintln!(
            "stopped by a signal after step {step} of {total}; checkpoint written to {}
resume with:
  {}",
            checkpoint.display(),
            resume_command()
        );
    }
    std::process::exit(EXIT_INTERRUPTED);
}

/// Refuses `--set` keys under `fields` (e.g. the encoder's own config,
/// which the baselines are built from); `why` says what to use instead.
pub fn refuse_set(sets: &[ssl_core::config::Override], fields: &[&str], why: &str) -> Result<()> {
    for o in sets {
        let top = o.key.split('.').next().unwrap_or_default();
        if fields.contains(&top) {
            return Err(Error::Config(format!("--set {}: {why}", o.key)));
        }
    }
    Ok(())
}

/// A finished run, on rank 0: its folder and its report.
#[derive(Debug)]
pub struct Finished {
    /// The run folder ([`RunArgs::run_dir`]).
    pub dir: PathBuf,
    /// What was written to its `report.json`.
    pub report: serde_json::Value,
}

/// What `--resume` found of one seed of `--seeds` ([`Run::earlier_seed`]).
#[derive(Debug)]
pub enum EarlierSeed {
    /// Not finished: train it, from its latest checkpoint if it has one.
    Train,
    /// Finished in an earlier invocation: its report (on rank 0; `None` on
    /// the other ranks), for the binary to return to [`over_seeds`] instead
    /// of training the seed again.
    Finished(Option<Finished>),
}

/// Runs `train` once per seed of `--seeds` (once, as given, without it).
/// `train` gets the options with the seed set and returns its report on
/// rank 0 (`None` on the other ranks). With several seeds, rank 0 writes
/// the summary ([`ssl_core::seeds::summarize`]) to the runs' parent
/// folder's `report.json` and prints each figure's mean ± sd.
pub fn over_seeds<E: From<Error>>(
    args: &RunArgs,
    spec: &SeedSpec,
    mut train: impl FnMut(&RunArgs) -> std::result::Result<Option<Finished>, E>,
) -> std::result::Result<(), E> {
    if args.seeds <= 1 {
        train(args)?;
        return Ok(());
    }
    if args.seed.checked_add(args.seeds - 1).is_none() {
        return Err(Error::Config(format!(
            "--seed {} with --seeds {} runs past the largest seed",
            args.seed, args.seeds
        ))
        .into());
    }
    let mut runs = Vec::new();
    let mut base = None;
    for k in 0..args.seeds {
        let a = RunArgs { seed: args.seed + k, ..args.clone() };
        if ssl_dist::world().is_main() && std::env::var("RANK").map_or(true, |r| r == "0") {
            eprintln!("== seed {} ({} of {}) ==", a.seed, k + 1, args.seeds);
        }
        if let Some(f) = train(&a)? {
            let name = f.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            base = f.dir.parent().map(PathBuf::from);
            runs.push((a.seed, name, f.report));
        }
    }
    let Some(base) = base else { return Ok(()) };
    let summary = ssl_core::seeds::summarize(&runs, spec);
    let path = base.join("report.json");
    write_json_atomic(&path, &summary)?;
    println!("\n{}", seed_table(&summary));
    println!("summary over {} seeds: {}", runs.len(), path.display());
    Ok(())
}

/// The figures of a seed summary as `name  mean ± sd` lines (percentages
/// for the `top1` and `f1` figures).
pub fn seed_table(summary: &serde_json::Value) -> String {
    let n = summary["seeds"].as_array().map_or(0, Vec::len);
    let mut out = format!("over {n} seeds (mean ± sd; difference: paired, same seed)\n");
    if let Some(figures) = summary["figures"].as_object() {
        let width = figures.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in figures {
            let (m, s) = (v["mean"].as_f64().unwrap_or(f64::NAN), v["sd"].as_f64().unwrap_or(f64::NAN));
            let pct = k.contains("top1") || k.contains("f1");
            let line = if pct {
                format!("  {k:<width$}  {:>7.2}% ± {:.2}", 100.0 * m, 100.0 * s)
            } else {
                format!("  {k:<width$}  {m:>8.4} ± {s:.4}")
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// The printed comparison of a pretrained encoder with random
/// initialisation: kNN, linear probe, and linear probes on fractions of
/// the labels (the columns `linear 1%`, `linear 10%`).
pub fn encoder_table(ssl: &ssl_core::eval::EvalReport, random: &ssl_core::eval::EvalReport) -> String {
    let mut out = String::from("                 kNN top-1   linear top-1");
    for f in &ssl.label_efficiency {
        out.push_str(&format!("  {:>11}", format!("linear {}%", ssl_core::eval::percent(f.fraction))));
    }
    out.push('\n');
    for (name, r) in [("SSL", ssl), ("random init", random)] {
        out.push_str(&format!("  {name:<15}{:>8.2}%   {:>10.2}%", 100.0 * r.knn_top1, 100.0 * r.linear_top1));
        for f in &r.label_efficiency {
            out.push_str(&format!("  {:>10.2}%", 100.0 * f.linear_top1));
        }
        out.push('\n');
    }
    if !ssl.label_efficiency.is_empty() {
        let counts: Vec<String> = ssl
            .label_efficiency
            .iter()
            .map(|f| format!("{}% = {}", ssl_core::eval::percent(f.fraction), f.labels))
            .collect();
        out.push_str(&format!(
            "  (labelled samples of the linear {}: class-balanced, fixed by the seed)\n",
            counts.join(", ")
        ));
    }
    out
}

/// `--batch-size` against the samples there are to draw batches from
/// (`available`, described by `what`, e.g. "training images of mnist5k"):
/// a batch larger than them is an error, the same in every binary.
pub fn check_batch_size(batch: usize, available: usize, what: &str) -> Result<()> {
    if batch > available {
        return Err(Error::Config(format!(
            "--batch-size {batch} is larger than the {available} {what}; pass --batch-size {available} or less"
        )));
    }
    Ok(())
}

/// The end of every modality's run on rank 0 (vision, audio and text,
/// and `finetune-text`), written once for all:
/// `report` (the binary's own fields) gains the comparison with random
/// initialisation ([`ssl_core::eval::comparison_json`]) and, when there was
/// fine-tuning, its rows ([`ssl_core::finetune::add_to_report`]) and
/// `finetune` (`{"config": …, "fractions": rows}`); then `report.json` and
/// `report.html` (with `extras`) are written into `out`, and the headline,
/// the encoder table, the fine-tuning lines and both paths printed.
pub fn finish_run(
    out: PathBuf,
    mut report: serde_json::Value,
    headline: &str,
    (ssl, random_init): (&ssl_core::eval::EvalReport, &ssl_core::eval::EvalReport),
    finetune: Option<(&[ssl_core::finetune::FractionResult], serde_json::Value)>,
    extras: &ssl_core::html_report::Extras,
) -> Result<Finished> {
    if let (Some(obj), serde_json::Value::Object(cmp)) =
        (report.as_object_mut(), ssl_core::eval::comparison_json(ssl, random_init))
    {
        obj.extend(cmp);
    }
    if let Some((rows, config)) = &finetune {
        ssl_core::finetune::add_to_report(&mut report, rows);
        report["finetune"] = serde_json::json!({"config": config, "fractions": rows});
    }
    write_json_atomic(&out.join("report.json"), &report)?;
    let html = write_page(&out, extras);
    println!("\n{headline}");
    print!("{}", encoder_table(ssl, random_init));
    if let Some((rows, _)) = &finetune {
        print!("{}", finetune_lines(rows));
    }
    println!("report: {} and {html}", out.join("report.json").display());
    Ok(Finished { dir: out, report })
}

/// Writes `out/report.html` ([`ssl_core::html_report::write`]) and returns
/// its path for printing. The page is for looking at, so a failure is a
/// warning on stderr (and "no report.html"), not a lost run.
pub fn write_page(out: &std::path::Path, extras: &ssl_core::html_report::Extras) -> String {
    match ssl_core::html_report::write(out, extras) {
        Ok(p) => p.display().to_string(),
        Err(e) => {
            eprintln!("warning: report.html was not written: {e}");
            "no report.html".into()
        }
    }
}

/// What a `DIR/{train,test}/<class>/` data folder holds that its loader
/// does not read (`reads` says which files of a class folder it does), so
/// that a binary can say so: files directly in `DIR/train` or `DIR/test`,
/// and in a class folder the files `reads` rejects and any sub-folder.
/// Hidden entries (named `.…`) and entries that cannot be listed are left
/// aside, as the loaders leave them.
pub fn unread_files(dir: &std::path::Path, reads: impl Fn(&std::path::Path) -> bool) -> Vec<PathBuf> {
    let visible = |d: &std::path::Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|it| it.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.retain(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')));
        v.sort();
        v
    };
    let mut out = Vec::new();
    for split in ["train", "test"] {
        for p in visible(&dir.join(split)) {
            if !p.is_dir() {
                out.push(p);
                continue;
            }
            out.extend(visible(&p).into_iter().filter(|f| f.is_dir() || !reads(f)));
        }
    }
    out
}

/// Prints, when `unread` is not empty, that these entries of `--data
/// folder:DIR` were not read (`why`: "not .wav"), naming the first few:
/// a data folder's stray files are said, not skipped in silence.
pub fn note_unread(unread: &[std::path::PathBuf], dir: &str, why: &str) {
    if unread.is_empty() {
        return;
    }
    let shown: Vec<String> = unread.iter().take(3).map(|p| p.display().to_string()).collect();
    let more = if unread.len() > 3 { format!(" and {} more", unread.len() - 3) } else { String::new() };
    eprintln!(
        "note: {} item(s) under {dir} are {why}, so they were not read: {}{more}",
        unread.len(),
        shown.join(", ")
    );
}

/// clap value parser of a finite number above 0 (learning rates,
/// temperatures, gradient-norm limits).
pub fn positive(s: &str) -> std::result::Result<f64, String> {
    number(s, |v| v > 0.0, "a finite number above 0")
}

/// clap value parser of a finite number of at least 0 (weight decay, a
/// mixup ratio where 0 turns it off).
pub fn non_negative(s: &str) -> std::result::Result<f64, String> {
    number(s, |v| v >= 0.0, "a finite number of at least 0")
}

/// clap value parser of a fraction in (0, 1] (of labels, of tokens).
pub fn fraction(s: &str) -> std::result::Result<f64, String> {
    number(s, |v| v > 0.0 && v <= 1.0, "a fraction in (0, 1]")
}

fn number(s: &str, ok: impl Fn(f64) -> bool, what: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && ok(v) => Ok(v),
        _ => Err(format!("expected {what}")),
    }
}

/// `--finetune-fractions`, checked: each in (0, 1].
pub fn check_fractions(fractions: &[f64]) -> Result<()> {
    match fractions.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
        Some(f) => Err(Error::Config(format!("--finetune-fractions: {f} is not a fraction in (0, 1]"))),
        None if fractions.is_empty() => Err(Error::Config("--finetune-fractions: give at least one".into())),
        None if fractions.iter().enumerate().any(|(i, f)| fractions[..i].contains(f)) => {
            Err(Error::Config("--finetune-fractions: a fraction is given twice".into()))
        }
        None => Ok(()),
    }
}

/// The printed fine-tuning results, one line per fraction of the labels.
pub fn finetune_lines(rows: &[ssl_core::finetune::FractionResult]) -> String {
    let mut out = String::new();
    for r in rows {
        let p = &r.plan;
        out.push_str(&format!(
            "  fine-tuned, {}% of the labels ({} samples, {} epochs of {}): SSL {:.2}%, random init {:.2}%\n",
            ssl_core::eval::percent(p.fraction),
            p.labels,
            p.epochs,
            p.batch_size,
            100.0 * r.ssl.test_top1,
            100.0 * r.random_init.test_top1
        ));
        if r.ssl.runs.len() > 1 {
            let pct =
                |v: &[f64]| v.iter().map(|x| format!("{:.2}", 100.0 * x)).collect::<Vec<_>>().join(", ");
            out.push_str(&format!(
                "    each of {} seeds: SSL {}; random init {}\n",
                r.ssl.runs.len(),
                pct(&r.ssl.runs),
                pct(&r.random_init.runs)
            ));
        }
    }
    out
}

/// Keys of a run's `config.json` that may change on `--resume` without
/// changing what the run computes (where it runs, how often it writes).
const RESUMABLE_KEYS: [&str; 10] = [
    "device",
    "torch_threads",
    "world_size",
    "train.epochs",
    "train.checkpoint_every",
    "train.checkpoint_every_steps",
    "train.checkpoint_every_minutes",
    "train.keep_checkpoints",
    "train.log_every",
    "train.monitor_every",
];

fn flatten(
    prefix: &str,
    v: &serde_json::Value,
    out: &mut std::collections::BTreeMap<String, serde_json::Value>,
) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, x, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// `--resume` against the run's saved config: `saved` (the folder's
/// `config.json`) and `new` (this invocation's, before it is written).
/// A difference in anything that changes the run (method, model, data,
/// batch size, seed, augmentation, optimizer, …) is an error listing each
/// key with its saved and new value. Where the run executes (device,
/// threads, ranks) and how often it writes may change; so may
/// `train.epochs` (with `train.warmup_epochs`, which the binaries clamp to
/// it), and the returned note says how the schedule is recomputed.
pub fn check_resume(saved: &serde_json::Value, new: &serde_json::Value) -> Result<Option<String>> {
    let (mut a, mut b) = (Default::default(), Default::default());
    flatten("", saved, &mut a);
    flatten("", new, &mut b);
    let epochs_changed = a.get("train.epochs") != b.get("train.epochs");
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let null = serde_json::Value::Null;
    let differing: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .filter(|k| !RESUMABLE_KEYS.contains(&k.as_str()))
        // The options as given (`record_args`): what they resolve to is
        // compared; a flag that changes nothing is no difference.
        .filter(|k| !(k.as_str() == "args" || k.starts_with("args.")))
        .filter(|k| !(epochs_changed && k.as_str() == "train.warmup_epochs"))
        .map(|k| format!("{k}: {} → {}", a.get(k).unwrap_or(&null), b.get(k).unwrap_or(&null)))
        .collect();
    if !differing.is_empty() {
        return Err(Error::Config(format!(
            "--resume: this run's settings differ from the ones it was started with (config.json), which would \
             change what it computes:\n  {}\nresume with the original flags, or start a new run with another --out",
            differing.join("\n  ")
        )));
    }
    let mut notes = Vec::new();
    if epochs_changed {
        notes.push(format!(
            "--resume: epochs {} → {}: the learning-rate and momentum schedules are recomputed for the new \
             total from the checkpoint's step on, so the rest of the run follows the new schedule",
            a.get("train.epochs").unwrap_or(&null),
            b.get("train.epochs").unwrap_or(&null)
        ));
    }
    // Allowed (a job may come back on fewer or more devices), but the
    // run is then not the one it would have been: said.
    if a.get("world_size") != b.get("world_size") && a.contains_key("world_size") {
        notes.push(format!(
            "--resume: {} rank(s) → {}: the global batch is the same, but each rank's random draws and \
             unsynchronised BatchNorm statistics follow the ranks, so the rest of the run is not exactly what \
             it would have been",
            a.get("world_size").unwrap_or(&null),
            b.get("world_size").unwrap_or(&null)
        ));
    }
    Ok((!notes.is_empty()).then(|| notes.join("\n")))
}

/// [`check_resume`] for `out`: reads `out/config.json` when `resume` is set
/// and it exists (a run folder without one has nothing to compare).
pub fn check_resume_in(
    out: &std::path::Path,
    new: &serde_json::Value,
    resume: bool,
) -> Result<Option<String>> {
    let path = out.join("config.json");
    if !resume || !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Config(format!("{}: cannot read: {e}", path.display())))?;
    let saved: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("{}: not valid JSON: {e}", path.display())))?;
    check_resume(&saved, new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resuming_with_other_settings_is_refused_naming_them() {
        let saved = json!({"method": "simclr", "batch_size": 256, "device": "cpu",
                           "train": {"epochs": 10, "warmup_epochs": 2, "optimizer": {"lr": 0.6}}});
        assert_eq!(check_resume(&saved, &saved).unwrap(), None);
        let moved = json!({"method": "simclr", "batch_size": 256, "device": "cuda:0",
                           "train": {"epochs": 10, "warmup_epochs": 2, "optimizer": {"lr": 0.6}}});
        assert_eq!(check_resume(&saved, &moved).unwrap(), None, "another device computes the same run");
        let changed = json!({"method": "simclr", "batch_size": 128, "device": "cpu",
                             "train": {"epochs": 10, "warmup_epochs": 2, "optimizer": {"lr": 0.3}}});
        let e = check_resume(&saved, &changed).unwrap_err().to_string();
        assert!(e.contains("batch_size: 256 → 128") && e.contains("train.optimizer.lr: 0.6 → 0.3"), "{e}");
        assert!(!e.contains("method"), "only the differing keys: {e}");
        let longer = json!({"method": "simclr", "batch_size": 256, "device": "cpu",
                            "train": {"epochs": 20, "warmup_epochs": 2, "optimizer": {"lr": 0.6}}});
        let note = check_resume(&saved, &longer).unwrap().unwrap();
        assert!(note.contains("epochs 10 → 20") && note.contains("recomputed"), "{note}");
        let mut wider = saved.clone();
        wider["world_size"] = 1.into();
        let mut two = wider.clone();
        two["world_size"] = 2.into();
        let note = check_resume(&wider, &two).unwrap().unwrap();
        assert!(note.contains("1 rank(s) → 2") && note.contains("not exactly"), "{note}");
        let dir = std::env::temp_dir().join(format!("ssl-cli-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(check_resume_in(&dir, &changed, true).unwrap(), None, "no config.json yet");
        std::fs::write(dir.join("config.json"), saved.to_string()).unwrap();
        assert!(check_resume_in(&dir, &changed, false).unwrap().is_none(), "not resuming");
        assert!(check_resume_in(&dir, &changed, true).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

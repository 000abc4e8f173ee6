//! The trainer on two CPU ranks (Gloo, 127.0.0.1): a run equals one
//! process's on the same global batches (with and without gradient
//! accumulation), only rank 0 writes, a 2-rank run cut by a crash and
//! resumed ends where an uninterrupted one does, a stop requested on one
//! rank stops both at the same step and resumes to the same end, a resume
//! whose checkpoints all fail their checks fails on every rank with its
//! own clear error, ranks started with different configurations refuse to
//! train, a non-finite buffer on one rank stops every rank with the same
//! error kind, and a killed rank is named by the survivor.

use ssl_core::method::{Batch, BatchSource, Method, Output};
use ssl_core::optim::OptimizerConfig;
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_core::{Error, Result};
use ssl_dist::testing::{load, rank_dir, run_ranks, run_ranks_killing, save};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

const DEADLINE: Duration = Duration::from_secs(120);

/// A two-layer regression MLP in f64.
struct Mlp {
    a: nn::Linear,
    b: nn::Linear,
    /// Sets the flag after this step (0-based), as a signal would.
    stop_after: Option<(usize, Arc<AtomicBool>)>,
    /// A rank-local running mean of the inputs, as BatchNorm's statistics
    /// are without --sync-bn (see [`model_with_buffer`]).
    running: Option<Tensor>,
}

impl Method for Mlp {
    fn name(&self) -> &'static str {
        "mlp"
    }
    fn loss(&self, batch: &Batch, _train: bool) -> Result<Output> {
        if let Some(r) = &self.running {
            tch::no_grad(|| {
                let new = r * 0.9 + batch.views[0].mean(Kind::Double) * 0.1;
                r.shallow_clone().copy_(&new);
            });
        }
        let y = self.b.forward(&self.a.forward(&batch.views[0]).tanh());
        Ok(Output::new(y.mse_loss(&batch.views[1], tch::Reduction::Mean)))
    }
    fn after_step(&mut self, step: usize, _total: usize) {
        if let Some((at, flag)) = &self.stop_after {
            if step == *at {
                flag.store(true, Ordering::SeqCst);
            }
        }
    }
    fn features(&self, x: &Tensor) -> Tensor {
        self.a.forward(x)
    }
}

fn model() -> (nn::VarStore, Mlp) {
    build(false)
}

/// [`model`] with a buffer (not trained, not synchronised) that the
/// forward pass updates from this rank's inputs.
fn model_with_buffer() -> (nn::VarStore, Mlp) {
    build(true)
}

fn build(buffer: bool) -> (nn::VarStore, Mlp) {
    tch::manual_seed(11);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let a = nn::linear(vs.root() / "a", 4, 8, Default::default());
    let b = nn::linear(vs.root() / "b", 8, 1, Default::default());
    let running = buffer.then(|| vs.root().zeros_no_train("running_mean", &[1]));
    vs.double();
    // `double` replaced the variables' data in place: read the buffer back.
    let running = running.map(|_| vs.variables()["running_mean"].shallow_clone());
    (vs, Mlp { a, b, stop_after: None, running })
}

/// Three global batches of 16 per epoch; fails at epoch `fail_at`, or has
/// `stall` (rank, epoch) sleep after telling the test to kill it, or gives
/// `nan_at` (rank, global step, 0-based) inputs of NaN.
struct Source {
    fail_at: Option<usize>,
    stall: Option<(usize, usize, std::path::PathBuf)>,
    nan_at: Option<(usize, usize)>,
}

impl BatchSource for Source {
    fn batches_per_epoch(&self) -> usize {
        3
    }
    fn batch_size(&self) -> usize {
        16
    }
    fn batch(&self, epoch: usize, index: usize) -> Result<Batch> {
        if Some(epoch) == self.fail_at {
            return Err(Error::Data("simulated crash".into()));
        }
        if let Some((rank, at, dir)) = &self.stall {
            if ssl_dist::world().rank() == *rank && epoch == *at {
                std::fs::write(dir.join("kill-me"), b"").expect("writing the kill marker");
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        let g = Tensor::arange(16 * 4, (Kind::Double, Device::Cpu)).reshape([16, 4]);
        let mut x = ((g + (epoch * 3 + index) as f64) * 0.37).sin();
        if self.nan_at == Some((ssl_dist::world().rank(), epoch * 3 + index)) {
            x = x.fill(f64::NAN);
        }
        let y = (&x * Tensor::from_slice(&[1.0f64, -2.0, 0.5, 3.0]))
            .sum_dim_intlist([1i64].as_slice(), true, Kind::Double)
            .sin();
        Ok(Batch { views: vec![x, y], labels: None })
    }
}

fn config(accumulate: usize) -> TrainConfig {
    TrainConfig {
        epochs: 3,
        optimizer: OptimizerConfig::adamw(0.05, 0.01),
        warmup_epochs: 1,
        checkpoint_every: 1,
        log_every: 1,
        bf16: false,
        accumulate,
        ..TrainConfig::default()
    }
}

fn join() -> &'static ssl_dist::Group {
    let g = ssl_dist::Group::from_env(&ssl_dist::GroupOptions {
        timeout: Duration::from_secs(20),
        ..Default::default()
    })
    .expect("joining the group");
    ssl_dist::init_world(g).expect("the process-wide group")
}

fn fit(
    dir: &Path,
    accumulate: usize,
    source: &Source,
    resume: bool,
    config_json: serde_json::Value,
) -> Result<Vec<(String, Tensor)>> {
    let (mut vs, mut m) = model();
    let t = Trainer::new(config(accumulate), Device::Cpu, dir, config_json);
    t.fit(&mut m, &mut vs, source, resume)?;
    Ok(vs.variables().into_iter().collect())
}

fn max_diff(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> f64 {
    let b: std::collections::HashMap<&String, &Tensor> = b.iter().map(|(n, t)| (n, t)).collect();
    a.iter().map(|(n, t)| (t - b[n]).abs().max().double_value(&[])).fold(0.0, f64::max)
}

/// On a rank: writes how long `f` took to fail, and its error, for the
/// test's process to read with [`rank_error`].
fn record_error(dir: &Path, rank: usize, f: impl FnOnce() -> String) {
    let started = std::time::Instant::now();
    let err = f();
    let waited = started.elapsed().as_secs_f64();
    std::fs::write(dir.join(format!("error{rank}.txt")), format!("{waited}\n{err}")).unwrap();
}

/// What [`record_error`] wrote for `rank`: seconds waited, and the error.
fn rank_error(dir: &Path, rank: usize) -> (f64, String) {
    let text = std::fs::read_to_string(dir.join(format!("error{rank}.txt"))).unwrap();
    let (waited, err) = text.split_once('\n').unwrap();
    (waited.parse().unwrap(), err.to_string())
}

const PLAIN: Source = Source { fail_at: None, stall: None, nan_at: None };

#[test]
fn two_ranks_train_as_one_process_and_resume_exactly() {
    let test = "two_ranks_train_as_one_process_and_resume_exactly";
    if let Some(dir) = rank_dir(test) {
        let g = join();
        for accumulate in [1, 2] {
            let w =
                fit(&dir.join(format!("acc{accumulate}")), accumulate, &PLAIN, false, serde_json::json!({}))
                    .unwrap();
            save(&dir, &format!("acc{accumulate}.rank{}.st", g.rank()), &w);
        }
        // Cut by a crash at epoch 2 on every rank, then resumed.
        let cut = dir.join("cut");
        let err = fit(
            &cut,
            1,
            &Source { fail_at: Some(2), stall: None, nan_at: None },
            false,
            serde_json::json!({}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("simulated crash"), "{err}");
        let w = fit(&cut, 1, &PLAIN, true, serde_json::json!({})).unwrap();
        save(&dir, &format!("resumed.rank{}.st", g.rank()), &w);
        g.barrier().unwrap();
        return;
    }
    let one = tempfile::tempdir().unwrap();
    let reference = fit(one.path(), 1, &PLAIN, false, serde_json::json!({})).unwrap();
    let accumulated = fit(&one.path().join("acc"), 2, &PLAIN, false, serde_json::json!({})).unwrap();
    let d = max_diff(&accumulated, &reference);
    assert!(d < 1e-12, "one process: --accumulate 2 differs from 1 by {d:e}");
    let run = run_ranks(test, 2, DEADLINE, &[]);
    run.assert_success();
    for rank in 0..2 {
        for name in ["acc1", "acc2", "resumed"] {
            let got = load(&run.dir, &format!("{name}.rank{rank}.st"));
            let d = max_diff(&got, &reference);
            eprintln!("rank {rank} {name}: 3 epochs on 2 ranks vs one process: {d:e}");
            assert!(d < 1e-12, "rank {rank}, {name}: the 2-rank run differs from one process by {d:e}");
        }
    }
    // Rank 0 alone wrote the log: one line per step and per epoch.
    let log = std::fs::read_to_string(run.dir.join("acc1/metrics.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("\"loss\":")).count(), 9, "{log}");
    assert_eq!(log.lines().filter(|l| l.contains("\"epoch_loss\":")).count(), 3);
    // The resumed run's log: the 2 epochs before the crash, then the last.
    let log = std::fs::read_to_string(run.dir.join("cut/metrics.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("\"epoch_loss\":")).count(), 3, "{log}");
}

#[test]
fn a_stop_on_one_rank_stops_both_at_one_step_and_resumes_exactly() {
    let test = "a_stop_on_one_rank_stops_both_at_one_step_and_resumes_exactly";
    if let Some(dir) = rank_dir(test) {
        let g = join();
        let run = dir.join("run");
        // Rank 1 alone is asked to stop, after its 4th step (mid-epoch 2).
        let (mut vs, mut m) = model();
        let flag = Arc::new(AtomicBool::new(false));
        if g.rank() == 1 {
            m.stop_after = Some((3, flag.clone()));
        }
        // Logging rarely: the stop is agreed on every step all the same.
        let rarely = TrainConfig { log_every: 1000, ..config(1) };
        let t = Trainer::new(rarely, Device::Cpu, &run, serde_json::json!({})).with_stop(flag);
        let step = match t.fit(&mut m, &mut vs, &PLAIN, false) {
            Err(Error::Interrupted { step, .. }) => step,
            other => panic!("rank {}: {:?}", g.rank(), other.map(|s| s.steps)),
        };
        std::fs::write(dir.join(format!("stopped.rank{}", g.rank())), step.to_string()).unwrap();
        let w = fit(&run, 1, &PLAIN, true, serde_json::json!({})).unwrap();
        save(&dir, &format!("resumed.rank{}.st", g.rank()), &w);
        g.barrier().unwrap();
        return;
    }
    let one = tempfile::tempdir().unwrap();
    let reference = fit(one.path(), 1, &PLAIN, false, serde_json::json!({})).unwrap();
    let run = run_ranks(test, 2, DEADLINE, &[]);
    run.assert_success();
    for rank in 0..2 {
        let step = std::fs::read_to_string(run.dir.join(format!("stopped.rank{rank}"))).unwrap();
        // Asked at the end of step 4 (after_step), the stop is agreed in
        // step 5's all-reduce: both ranks stop after step 5.
        assert_eq!(step, "5", "rank {rank} stopped after step {step}, not with the other rank after step 5");
        let d = max_diff(&load(&run.dir, &format!("resumed.rank{rank}.st")), &reference);
        assert!(
            d < 1e-12,
            "rank {rank}: stopped and resumed, the 2-rank run differs from one process by {d:e}"
        );
    }
}

#[test]
fn when_rank_0_finds_no_good_checkpoint_every_rank_fails_at_once() {
    let test = "when_rank_0_finds_no_good_checkpoint_every_rank_fails_at_once";
    if let Some(dir) = rank_dir(test) {
        let g = join();
        let run = dir.join("run");
        fit(&run, 1, &PLAIN, false, serde_json::json!({})).unwrap();
        g.barrier().unwrap();
        if g.rank() == 0 {
            // Truncate every kept checkpoint's weights.
            for e in std::fs::read_dir(run.join("checkpoints")).unwrap() {
                let model = e.unwrap().path().join("model.safetensors");
                if model.exists() {
                    std::fs::write(&model, b"cut").unwrap();
                }
            }
        }
        g.barrier().unwrap();
        record_error(&dir, g.rank(), || {
            fit(&run, 1, &PLAIN, true, serde_json::json!({})).unwrap_err().to_string()
        });
        return;
    }
    let run = run_ranks(test, 2, DEADLINE, &[]);
    run.assert_success();
    for rank in 0..2 {
        let (waited, err) = rank_error(&run.dir, rank);
        // Well under the 20 s collective timeout: no rank waits for another.
        assert!(waited < 10.0, "rank {rank} took {waited} s to fail: {err}");
        let want =
            if rank == 0 { "no checkpoint passes its checks" } else { "rank 0 could not pick a checkpoint" };
        assert!(err.contains(want), "rank {rank}: {err}");
    }
}

#[test]
fn a_non_finite_buffer_on_one_rank_stops_every_rank_as_diverged() {
    let test = "a_non_finite_buffer_on_one_rank_stops_every_rank_as_diverged";
    if let Some(dir) = rank_dir(test) {
        let g = join();
        // Rank 1's inputs of global step 5 (0-based 4) are NaN: the synced
        // gradient is non-finite on both ranks, so both skip the step, but
        // only rank 1's running mean holds the NaN.
        let (mut vs, mut m) = model_with_buffer();
        let source = Source { fail_at: None, stall: None, nan_at: Some((1, 4)) };
        let t = Trainer::new(config(1), Device::Cpu, &dir.join("run"), serde_json::json!({}));
        record_error(&dir, g.rank(), || match t.fit(&mut m, &mut vs, &source, false) {
            Err(e @ Error::Diverged { .. }) => e.to_string(),
            other => panic!("rank {}: expected Diverged, got {:?}", g.rank(), other.map(|s| s.steps)),
        });
        return;
    }
    let run = run_ranks(test, 2, DEADLINE, &[]);
    run.assert_success();
    for rank in 0..2 {
        let (waited, err) = rank_error(&run.dir, rank);
        eprintln!("rank {rank} after {waited} s: {err}");
        // Well under the 20 s collective timeout: no rank waits for one
        // that has already stopped.
        assert!(waited < 10.0, "rank {rank} took {waited} s: {err}");
        assert!(
            err.contains("diverged at step 5") && err.contains("non-finite gradient norm"),
            "rank {rank}: {err}"
        );
        let place = if rank == 1 { "`running_mean`" } else { "a buffer of another rank" };
        assert!(err.contains(place), "rank {rank}: {err}");
    }
}

#[test]
fn ranks_with_different_configurations_refuse_to_train() {
    let test = "ranks_with_different_configurations_refuse_to_train";
    if let Some(dir) = rank_dir(test) {
        let g = join();
        let cfg = serde_json::json!({"method": "simclr", "lr": 0.1 * (1 + g.rank()) as f64, "device": format!("cuda:{}", g.rank())});
        let err = fit(&dir.join("run"), 1, &PLAIN, false, cfg).unwrap_err().to_string();
        std::fs::write(dir.join(format!("error{}.txt", g.rank())), err).unwrap();
        return;
    }
    let run = run_ranks(test, 2, DEADLINE, &[]);
    run.assert_success();
    for rank in 0..2 {
        let e = std::fs::read_to_string(run.dir.join(format!("error{rank}.txt"))).unwrap();
        eprintln!("{e}");
        assert!(
            e.contains(&format!("rank {rank} of 2: the ranks were started with different configurations")),
            "{e}"
        );
        assert!(e.contains("rank 1 differs from rank 0 in lr: 0.1 on rank 0, 0.2 on rank 1"), "{e}");
        // Each rank's own device is not a difference.
        assert!(!e.contains("device"), "{e}");
    }
}

#[test]
fn a_rank_killed_mid_run_is_named_by_the_survivor() {
    let test = "a_rank_killed_mid_run_is_named_by_the_survivor";
    if let Some(dir) = rank_dir(test) {
        join();
        let source = Source { fail_at: None, stall: Some((1, 1, dir.clone())), nan_at: None };
        let e = fit(&dir.join("run"), 1, &source, false, serde_json::json!({})).unwrap_err().to_string();
        std::fs::write(dir.join("error.txt"), e).unwrap();
        return;
    }
    let run = run_ranks_killing(test, 2, DEADLINE, &[], Some((1, "kill-me")));
    assert!(!run.timed_out, "{}", run.describe());
    let e =
        std::fs::read_to_string(run.dir.join("error.txt")).unwrap_or_else(|_| panic!("{}", run.describe()));
    eprintln!("{e}");
    assert!(e.starts_with("rank 0 of 2:"), "{e}");
    assert!(e.contains("rank 1 stopped answering"), "{e}");
}

//! Exact resume: a run stopped after any step (by the stop flag, as a
//! SIGTERM does, or by a crash after a mid-epoch checkpoint) and resumed
//! ends with bit-identical weights, summary and `metrics.jsonl` rows
//! (timings aside) to an uninterrupted run, with a method that draws from
//! libtorch's generator every step (dropout), an online probe and the
//! collapse figures. A corrupt latest checkpoint falls back to the one
//! before it.
//!
//! Its own test binary, and one test function: the trainer reseeds
//! libtorch's process-wide generator every step, so no other training may
//! run beside it.

use ssl_core::method::{Batch, BatchSource, Method, Output};
use ssl_core::optim::OptimizerConfig;
use ssl_core::trainer::{TrainConfig, TrainSummary, Trainer};
use ssl_core::{Error, Result};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// Features through dropout, regressed onto a target.
struct Noisy {
    lin: nn::Linear,
    head: nn::Linear,
    /// Set after this step (0-based), as a signal handler would.
    stop_after: Option<(usize, Arc<AtomicBool>)>,
}

impl Method for Noisy {
    fn name(&self) -> &'static str {
        "noisy"
    }
    fn loss(&self, batch: &Batch, train: bool) -> Result<Output> {
        let f = self.lin.forward(&batch.views[0]).relu().dropout(0.5, train);
        let loss = self.head.forward(&f).mse_loss(&batch.views[1], tch::Reduction::Mean);
        Ok(Output::new(loss).with_features(f))
    }
    fn after_step(&mut self, step: usize, _total: usize) {
        if let Some((at, flag)) = &self.stop_after {
            if step == *at {
                flag.store(true, Ordering::SeqCst);
            }
        }
    }
    fn features(&self, x: &Tensor) -> Tensor {
        self.lin.forward(x).relu()
    }
}

const PER_EPOCH: usize = 4;
const EPOCHS: usize = 3;
const STEPS: usize = PER_EPOCH * EPOCHS;

/// Deterministic labelled batches; fails on the batch of global step
/// `fail_at` (0-based) to simulate a crash.
struct Source {
    fail_at: Option<usize>,
}

impl BatchSource for Source {
    fn batches_per_epoch(&self) -> usize {
        PER_EPOCH
    }
    fn batch_size(&self) -> usize {
        16
    }
    fn batch(&self, epoch: usize, index: usize) -> Result<Batch> {
        if Some(epoch * PER_EPOCH + index) == self.fail_at {
            return Err(Error::Data("simulated crash".into()));
        }
        let g = Tensor::arange(16 * 6, (Kind::Float, Device::Cpu)).reshape([16, 6]);
        let x = ((g * 1.3 + (epoch * PER_EPOCH + index) as f64) * 0.37).sin();
        let y = x.sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
        let labels = x.argmax(1, false);
        Ok(Batch { views: vec![x, y], labels: Some(labels) })
    }
}

fn config(seed: u64) -> TrainConfig {
    TrainConfig {
        epochs: EPOCHS,
        optimizer: OptimizerConfig::adamw(0.02, 0.01),
        warmup_epochs: 1,
        checkpoint_every: 1,
        log_every: 1,
        bf16: false,
        online_probe_classes: Some(6),
        seed,
        ..TrainConfig::default()
    }
}

/// The same starting weights every time, drawn from a seeded generator.
fn new_model(stop_after: Option<(usize, Arc<AtomicBool>)>) -> (nn::VarStore, Noisy) {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = nn::linear(vs.root() / "lin", 6, 32, Default::default());
    let head = nn::linear(vs.root() / "head", 32, 1, Default::default());
    (vs, Noisy { lin, head, stop_after })
}

/// What a run leaves: its weights, its summary without timings, and its
/// log rows without throughput.
struct Outcome {
    weights: Vec<(String, Tensor)>,
    summary: serde_json::Value,
    rows: Vec<serde_json::Value>,
}

fn outcome(dir: &Path, vs: &nn::VarStore, s: &TrainSummary) -> Outcome {
    let mut summary = serde_json::to_value(s).unwrap();
    for k in ["train_wall_s", "samples_per_s", "data_wait_fraction"] {
        summary.as_object_mut().unwrap().remove(k);
    }
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let rows = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("samples_per_s");
            v
        })
        .collect();
    let mut weights: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    Outcome { weights, summary, rows }
}

fn full_run(dir: &Path, seed: u64) -> Outcome {
    let (mut vs, mut m) = new_model(None);
    let s = Trainer::new(config(seed), Device::Cpu, dir, serde_json::json!({}))
        .fit(&mut m, &mut vs, &Source { fail_at: None }, false)
        .unwrap();
    assert_eq!(s.steps, STEPS);
    outcome(dir, &vs, &s)
}

fn resume(dir: &Path, cfg: TrainConfig) -> Outcome {
    let (mut vs, mut m) = new_model(None);
    let s = Trainer::new(cfg, Device::Cpu, dir, serde_json::json!({}))
        .fit(&mut m, &mut vs, &Source { fail_at: None }, true)
        .unwrap();
    outcome(dir, &vs, &s)
}

fn assert_same(what: &str, got: &Outcome, want: &Outcome) {
    assert_eq!(got.weights.len(), want.weights.len());
    for ((n, a), (_, b)) in got.weights.iter().zip(&want.weights) {
        assert!(a.equal(b), "{what}: `{n}` differs by {}", (a - b).abs().max().double_value(&[]));
    }
    assert_eq!(got.summary, want.summary, "{what}: the summaries differ");
    assert_eq!(
        got.rows.len(),
        want.rows.len(),
        "{what}: {} log rows, want {}",
        got.rows.len(),
        want.rows.len()
    );
    for (a, b) in got.rows.iter().zip(&want.rows) {
        assert_eq!(a, b, "{what}: the log rows differ");
    }
}

#[test]
fn a_run_stopped_or_crashed_at_any_step_resumes_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let want = full_run(&tmp.path().join("full"), 0);
    // The run does depend on the generator: another seed gives other
    // dropout masks, so a resume that drew other masks would be caught.
    let other = full_run(&tmp.path().join("other-seed"), 1);
    assert!(!other.weights[0].1.equal(&want.weights[0].1), "the seed changes nothing: the test cannot fail");
    assert!(want.summary["collapse"].is_object(), "{}", want.summary);

    // Stopped by the flag after steps 1, 6 (mid-epoch, end of epoch 1 is
    // step 4) and 11, with no periodic checkpoint: the stop writes one.
    for at in [1, 6, 11] {
        let dir = tmp.path().join(format!("stop-{at}"));
        let flag = Arc::new(AtomicBool::new(false));
        let (mut vs, mut m) = new_model(Some((at - 1, flag.clone())));
        let cfg = TrainConfig { checkpoint_every: 0, ..config(0) };
        let err = Trainer::new(cfg.clone(), Device::Cpu, &dir, serde_json::json!({}))
            .with_stop(flag)
            .fit(&mut m, &mut vs, &Source { fail_at: None }, false)
            .unwrap_err();
        match &err {
            Error::Interrupted { step, total_steps, checkpoint } => {
                assert_eq!((*step, *total_steps), (at, STEPS));
                assert!(checkpoint.ends_with(format!("step-{at:08}")), "{}", checkpoint.display());
                assert!(checkpoint.join("trainer.safetensors").exists());
            }
            e => panic!("stopping after step {at}: {e}"),
        }
        assert_same(&format!("stopped after step {at}"), &resume(&dir, cfg), &want);
    }

    // A crash (no checkpoint of its own) in the 8th step, with a checkpoint
    // every 3 steps: the run resumes from step 6, and the row of step 7
    // it logs again must not appear twice.
    let dir = tmp.path().join("crash");
    let cfg = TrainConfig { checkpoint_every_steps: 3, ..config(0) };
    let (mut vs, mut m) = new_model(None);
    let err = Trainer::new(cfg.clone(), Device::Cpu, &dir, serde_json::json!({}))
        .fit(&mut m, &mut vs, &Source { fail_at: Some(7) }, false)
        .unwrap_err();
    assert!(err.to_string().contains("simulated crash"), "{err}");
    let log = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert!(log.contains("\"step\":7}"), "the crashed run logged step 7 after its checkpoint at 6: {log}");
    // A kill while a row was being written leaves half a line.
    std::fs::write(dir.join("metrics.jsonl"), format!("{log}{{\"step\":8,\"lo")).unwrap();
    assert_same("crashed in step 8, resumed from step 6", &resume(&dir, cfg.clone()), &want);

    // The latest checkpoint corrupted after it was written: the resume
    // names it and falls back to the one before it.
    let dir = tmp.path().join("corrupt");
    let (mut vs, mut m) = new_model(None);
    Trainer::new(cfg.clone(), Device::Cpu, &dir, serde_json::json!({}))
        .fit(&mut m, &mut vs, &Source { fail_at: Some(10) }, false)
        .unwrap_err();
    let ckpt = dir.join("checkpoints");
    let latest = ssl_core::checkpoint::latest(&ckpt).unwrap().unwrap();
    assert!(latest.ends_with("step-00000009"), "{}", latest.display());
    let model = latest.join("model.safetensors");
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&model, &bytes).unwrap();
    let found = ssl_core::checkpoint::find_resumable(&ckpt).unwrap();
    assert!(found.path.as_ref().unwrap().ends_with("step-00000008"), "{found:?}");
    assert!(
        found.skipped[0].contains("model.safetensors") && found.skipped[0].contains("SHA-256"),
        "{found:?}"
    );
    // Truncated: named by its size.
    let opt = ckpt.join("step-00000008/optimizer.safetensors");
    let bytes = std::fs::read(&opt).unwrap();
    std::fs::write(&opt, &bytes[..bytes.len() / 2]).unwrap();
    let found = ssl_core::checkpoint::find_resumable(&ckpt).unwrap();
    assert_eq!(found.path, None, "{found:?}");
    assert!(found.skipped[1].contains("truncated"), "{found:?}");
    std::fs::write(&opt, &bytes).unwrap();
    assert_same("the latest checkpoint corrupt", &resume(&dir, cfg), &want);
}

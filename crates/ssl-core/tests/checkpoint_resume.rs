//! The trainer's checkpoints: an interrupted run resumed from its latest
//! checkpoint ends with exactly the weights of an uninterrupted run; a
//! half-written checkpoint is never picked up; a checkpoint of another
//! architecture is refused by name. Also the online probe, which rides
//! along with the trainer.

use ssl_core::checkpoint;
use ssl_core::method::{Batch, BatchSource, Method, Output};
use ssl_core::optim::OptimizerConfig;
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_core::{Error, Result};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// Regress y = x·a with a linear layer.
struct Toy {
    lin: nn::Linear,
}

impl Method for Toy {
    fn name(&self) -> &'static str {
        "toy"
    }
    fn loss(&self, batch: &Batch, _train: bool) -> ssl_core::Result<Output> {
        let loss = self.lin.forward(&batch.views[0]).mse_loss(&batch.views[1], tch::Reduction::Mean);
        Ok(Output::new(loss).with_metrics(vec![("extra", Tensor::from(1.0f64))]))
    }
    fn features(&self, x: &Tensor) -> Tensor {
        self.lin.forward(x)
    }
}

/// Deterministic batches; fails at `fail_at` (epoch) to simulate a crash.
struct Source {
    fail_at: Option<usize>,
}

impl BatchSource for Source {
    fn batches_per_epoch(&self) -> usize {
        3
    }
    fn batch_size(&self) -> usize {
        8
    }
    fn batch(&self, epoch: usize, index: usize) -> Result<Batch> {
        if Some(epoch) == self.fail_at {
            return Err(Error::Data("simulated crash".into()));
        }
        let g = Tensor::arange(8 * 4, (Kind::Float, Device::Cpu)).reshape([8, 4]);
        let x = ((g + (epoch * 3 + index) as f64) * 0.37).sin();
        let y = x.matmul(&Tensor::from_slice(&[1.0f32, -2.0, 0.5, 3.0]).reshape([4, 1]));
        Ok(Batch { views: vec![x, y], labels: None })
    }
}

fn config() -> TrainConfig {
    TrainConfig {
        epochs: 4,
        optimizer: OptimizerConfig::adamw(0.05, 0.01),
        warmup_epochs: 1,
        checkpoint_every: 1,
        log_every: 1,
        bf16: false,
        ..TrainConfig::default()
    }
}

/// The same starting weights every time, without libtorch's global random
/// generator (tests in this binary run in parallel and share it).
fn new_model() -> (nn::VarStore, Toy) {
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = nn::linear(vs.root() / "lin", 4, 1, Default::default());
    tch::no_grad(|| {
        lin.ws.shallow_clone().copy_(&Tensor::from_slice(&[0.3f32, -0.2, 0.1, 0.4]).reshape([1, 4]));
        let _ = lin.bs.as_ref().expect("a bias").shallow_clone().fill_(0.05);
    });
    (vs, Toy { lin })
}

fn weights(vs: &nn::VarStore) -> Tensor {
    vs.variables()["lin.weight"].detach().copy()
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let (full_dir, cut_dir) = (dir.path().join("full"), dir.path().join("cut"));

    let (mut vs, mut m) = new_model();
    let t = Trainer::new(config(), Device::Cpu, &full_dir, serde_json::json!({"run": "full"}));
    let full = t.fit(&mut m, &mut vs, &Source { fail_at: None }, false).unwrap();
    assert_eq!(full.steps, 12);
    let want = weights(&vs);

    let (mut vs, mut m) = new_model();
    let t = Trainer::new(config(), Device::Cpu, &cut_dir, serde_json::json!({"run": "cut"}));
    let err = t.fit(&mut m, &mut vs, &Source { fail_at: Some(2) }, false).unwrap_err();
    assert!(err.to_string().contains("simulated crash"));
    let latest = checkpoint::latest(&t.checkpoint_dir()).unwrap().unwrap();
    assert!(latest.ends_with("step-00000006"), "{}", latest.display());
    // A crash while writing the next checkpoint leaves only a temp folder.
    std::fs::create_dir_all(t.checkpoint_dir().join(".step-00000009.tmp")).unwrap();

    let (mut vs, mut m) = new_model();
    let resumed = t.fit(&mut m, &mut vs, &Source { fail_at: None }, true).unwrap();
    assert_eq!(resumed.steps, 12);
    let got = weights(&vs);
    let diff = (&got - &want).abs().max().double_value(&[]);
    assert!(diff == 0.0, "resumed weights differ by {diff}");
    // Only the newest `keep_checkpoints` remain.
    let kept: Vec<_> = std::fs::read_dir(t.checkpoint_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    // The log has one line per step, with the method's extras, and one
    // summary per completed epoch: the crashed run's rows after its
    // checkpoint were dropped on resume.
    let log = std::fs::read_to_string(cut_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("\"loss\":")).count(), 12);
    assert_eq!(log.lines().filter(|l| l.contains("\"epoch_loss\":")).count(), 4);
    assert!(log.contains("\"extra\":1.0"));
}

#[test]
fn epoch_loss_is_the_mean_of_every_step_whatever_the_logging() {
    let run = |log_every: usize| {
        let dir = tempfile::tempdir().unwrap();
        let (mut vs, mut m) = new_model();
        let cfg = TrainConfig { log_every, ..config() };
        let t = Trainer::new(cfg, Device::Cpu, dir.path(), serde_json::json!({}));
        let s = t.fit(&mut m, &mut vs, &Source { fail_at: None }, false).unwrap();
        let log = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        (s.final_loss, log)
    };
    let (every_step, log) = run(1);
    // With a line per step, the last epoch's mean is the mean of its 3 lines.
    let losses: Vec<f64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["epoch"] == 3 && v.get("loss").is_some())
        .map(|v| v["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 3);
    let mean = losses.iter().sum::<f64>() / 3.0;
    assert!((every_step - mean).abs() < 1e-6, "{every_step} vs {mean}");
    // Logging less often changes nothing.
    let (sparse, _) = run(100);
    assert!((sparse - every_step).abs() < 1e-9, "{sparse} vs {every_step}");
}

#[test]
fn checkpoint_of_another_architecture_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut vs, mut m) = new_model();
    let cfg = TrainConfig { epochs: 1, ..config() };
    let t = Trainer::new(cfg, Device::Cpu, dir.path(), serde_json::json!({}));
    t.fit(&mut m, &mut vs, &Source { fail_at: None }, false).unwrap();
    let model = checkpoint::latest(&t.checkpoint_dir()).unwrap().unwrap().join("model.safetensors");

    let mut other = nn::VarStore::new(Device::Cpu);
    let _ = nn::linear(other.root() / "lin", 5, 1, Default::default());
    let err = checkpoint::load_weights(&model, &mut other).unwrap_err().to_string();
    assert!(err.contains("lin.weight") && err.contains("[1, 5]"), "{err}");

    let mut renamed = nn::VarStore::new(Device::Cpu);
    let _ = nn::linear(renamed.root() / "fc", 4, 1, Default::default());
    let err = checkpoint::load_weights(&model, &mut renamed).unwrap_err().to_string();
    assert!(err.contains("another architecture") && err.contains("model.safetensors"), "{err}");
}

/// Batches of [`Source`], with NaN inputs on the batches of the global
/// steps (0-based) in `nan_at`.
struct NanSource {
    nan_at: Vec<usize>,
}

impl BatchSource for NanSource {
    fn batches_per_epoch(&self) -> usize {
        3
    }
    fn batch_size(&self) -> usize {
        8
    }
    fn batch(&self, epoch: usize, index: usize) -> Result<Batch> {
        let b = Source { fail_at: None }.batch(epoch, index)?;
        if !self.nan_at.contains(&(epoch * 3 + index)) {
            return Ok(b);
        }
        let x = Tensor::full([8, 4], f64::NAN, (Kind::Float, Device::Cpu));
        Ok(Batch { views: vec![x, b.views[1].shallow_clone()], labels: None })
    }
}

#[test]
fn a_non_finite_step_is_skipped_counted_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut vs, mut m) = new_model();
    let t = Trainer::new(config(), Device::Cpu, dir.path(), serde_json::json!({}));
    let s = t.fit(&mut m, &mut vs, &NanSource { nan_at: vec![4, 7] }, false).unwrap();
    assert_eq!((s.steps, s.skipped_steps), (12, 2));
    assert!(s.final_loss.is_finite(), "{}", s.final_loss);
    let w = weights(&vs);
    assert!(w.isfinite().all().int64_value(&[]) == 1, "{w}");
    let log = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let skipped: Vec<&str> = log.lines().filter(|l| l.contains("\"skipped\"")).collect();
    assert_eq!(skipped.len(), 2, "{log}");
    assert!(skipped[0].contains("\"step\":5") && skipped[0].contains("non-finite"), "{log}");
    // 10 good steps logged; no NaN anywhere in the log.
    assert_eq!(log.lines().filter(|l| l.contains("\"loss\":")).count(), 10, "{log}");
    assert!(!log.contains("NaN") && !log.contains("null"), "{log}");
}

#[test]
fn a_fresh_run_into_an_earlier_runs_folder_removes_its_checkpoints_log_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let (mut vs, mut m) = new_model();
    Trainer::new(config(), Device::Cpu, dir.path(), serde_json::json!({}))
        .fit(&mut m, &mut vs, &Source { fail_at: None }, false)
        .unwrap();
    std::fs::write(dir.path().join("report.json"), "{}").unwrap();
    // Again, shorter and not resumed: nothing of the first run is left.
    let (mut vs, mut m) = new_model();
    let t =
        Trainer::new(TrainConfig { epochs: 2, ..config() }, Device::Cpu, dir.path(), serde_json::json!({}));
    t.fit(&mut m, &mut vs, &Source { fail_at: None }, false).unwrap();
    let latest = checkpoint::latest(&t.checkpoint_dir()).unwrap().unwrap();
    assert!(latest.ends_with("step-00000006"), "{}", latest.display());
    assert!(!t.checkpoint_dir().join("step-00000012").exists());
    let log = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("\"loss\":")).count(), 6, "{log}");
    assert!(!dir.path().join("report.json").exists());
}

/// [`Toy`] that also hands the trainer its features (the collapse figures).
struct ToyWithFeatures(Toy);

impl Method for ToyWithFeatures {
    fn name(&self) -> &'static str {
        "toy-features"
    }
    fn loss(&self, batch: &Batch, train: bool) -> ssl_core::Result<Output> {
        let out = self.0.loss(batch, train)?;
        Ok(out.with_features(self.0.features(&batch.views[0])))
    }
    fn features(&self, x: &Tensor) -> Tensor {
        self.0.features(x)
    }
}

#[test]
fn a_skipped_steps_features_stay_out_of_the_collapse_figures() {
    // Step 2's NaN features would reach the epoch's SVD (a panic on the
    // CPU) and a NaN rank in the checkpoint's state.json.
    let dir = tempfile::tempdir().unwrap();
    let (mut vs, m) = new_model();
    let mut m = ToyWithFeatures(m);
    let t = Trainer::new(config(), Device::Cpu, dir.path(), serde_json::json!({}));
    let s = t.fit(&mut m, &mut vs, &NanSource { nan_at: vec![1] }, false).unwrap();
    assert_eq!((s.steps, s.skipped_steps), (12, 1));
    let latest = checkpoint::latest(&t.checkpoint_dir()).unwrap().unwrap();
    let state = std::fs::read_to_string(latest.join("state.json")).unwrap();
    assert!(!state.contains("null") && !state.contains("NaN"), "{state}");
}

#[test]
fn many_non_finite_steps_in_a_row_stop_the_run_naming_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let (mut vs, mut m) = new_model();
    let t = Trainer::new(config(), Device::Cpu, dir.path(), serde_json::json!({}));
    let err =
        t.fit(&mut m, &mut vs, &NanSource { nan_at: (4..12).collect() }, false).unwrap_err().to_string();
    assert!(err.contains("diverged at step 9") && err.contains("5 steps in a row"), "{err}");
    // The checkpoint of epoch 2 (one good step, two skipped) is the last.
    let latest = checkpoint::latest(&t.checkpoint_dir()).unwrap().unwrap();
    assert!(latest.ends_with("step-00000006"), "{}", latest.display());
}

/// A method whose loss fails inside libtorch (a shape error, raised by
/// tch as a panic, as a CUDA out-of-memory is).
struct Broken;

impl Method for Broken {
    fn name(&self) -> &'static str {
        "broken"
    }
    fn loss(&self, batch: &Batch, _train: bool) -> ssl_core::Result<Output> {
        Ok(Output::new(
            batch.views[0].matmul(&Tensor::ones([5, 1], (Kind::Float, Device::Cpu))).mean(Kind::Float),
        ))
    }
    fn features(&self, x: &Tensor) -> Tensor {
        x.shallow_clone()
    }
}

#[test]
fn a_libtorch_failure_in_a_step_is_an_error_naming_the_step_and_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut vs, _) = new_model();
    let t = Trainer::new(config(), Device::Cpu, dir.path(), serde_json::json!({}));
    let err = t.fit(&mut Broken, &mut vs, &Source { fail_at: None }, false).unwrap_err().to_string();
    assert!(err.contains("step 1 failed") && err.contains("batch size 8"), "{err}");
    assert!(err.contains("libtorch failed inside the step") && err.contains("mat1 and mat2"), "{err}");
}

/// Features that carry the label (its argmax) at a given scale, on top of
/// an offset shared by every sample (as post-ReLU features have).
struct Scaled {
    lin: nn::Linear,
    scale: f64,
    offset: f64,
}

impl Method for Scaled {
    fn name(&self) -> &'static str {
        "scaled"
    }
    fn loss(&self, batch: &Batch, _train: bool) -> ssl_core::Result<Output> {
        let loss = self.lin.forward(&batch.views[0]).square().mean(Kind::Float);
        Ok(Output::new(loss).with_features(self.features(&batch.views[0])))
    }
    fn features(&self, x: &Tensor) -> Tensor {
        (x + self.offset) * self.scale
    }
}

struct Labelled;

impl BatchSource for Labelled {
    fn batches_per_epoch(&self) -> usize {
        20
    }
    fn batch_size(&self) -> usize {
        64
    }
    fn batch(&self, epoch: usize, index: usize) -> Result<Batch> {
        let g = Tensor::arange(64 * 4, (Kind::Float, Device::Cpu)).reshape([64, 4]);
        let x = ((g * 1.7 + (epoch * 20 + index) as f64) * 0.91).sin();
        let y = x.argmax(1, false);
        Ok(Batch { views: vec![x], labels: Some(y) })
    }
}

#[test]
fn online_probe_learns_whatever_the_feature_scale_and_offset() {
    let accuracy = |scale: f64, offset: f64| {
        let dir = tempfile::tempdir().unwrap();
        let (mut vs, m) = new_model();
        let mut m = Scaled { lin: m.lin, scale, offset };
        let cfg = TrainConfig { epochs: 5, online_probe_classes: Some(4), ..config() };
        let t = Trainer::new(cfg, Device::Cpu, dir.path(), serde_json::json!({}));
        t.fit(&mut m, &mut vs, &Labelled, false).unwrap();
        let log = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        let last = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter_map(|v| v["online_probe_top1"].as_f64())
            .next_back();
        last.expect("the online probe logs its accuracy")
    };
    let (unit, huge) = (accuracy(1.0, 0.0), accuracy(1e3, 20.0));
    // Chance is 25%.
    assert!(unit > 0.8, "{unit}");
    assert!((unit - huge).abs() < 0.02, "plain: {unit}, scaled and offset: {huge}");
}

/// Batches that take 30 ms to make, for the data-wait measurement.
struct SlowSource;

impl BatchSource for SlowSource {
    fn batches_per_epoch(&self) -> usize {
        4
    }
    fn batch_size(&self) -> usize {
        8
    }
    fn batch(&self, epoch: usize, index: usize) -> Result<Batch> {
        std::thread::sleep(std::time::Duration::from_millis(30));
        Source { fail_at: None }.batch(epoch, index)
    }
}

#[test]
fn the_summary_reports_the_time_spent_waiting_for_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig { epochs: 2, checkpoint_every: 10, ..config() };
    let (mut vs, mut toy) = new_model();
    let slow = Trainer::new(cfg.clone(), Device::Cpu, dir.path(), serde_json::json!({}))
        .fit(&mut toy, &mut vs, &SlowSource, false)
        .unwrap();
    // A tiny linear step takes well under a millisecond: the loop waits
    // for the 30 ms batches most of the time.
    assert!(slow.data_wait_fraction > 0.6 && slow.data_wait_fraction <= 1.0, "{}", slow.data_wait_fraction);
    let dir2 = tempfile::tempdir().unwrap();
    let (mut vs, mut toy) = new_model();
    let fast = Trainer::new(cfg, Device::Cpu, dir2.path(), serde_json::json!({}))
        .fit(&mut toy, &mut vs, &Source { fail_at: None }, false)
        .unwrap();
    assert!(
        fast.data_wait_fraction < slow.data_wait_fraction,
        "{} vs {}",
        fast.data_wait_fraction,
        slow.data_wait_fraction
    );
}

//! The trainer's collapse alarm on a method forced to collapse: a linear
//! encoder trained to map every sample to one point. Its training features
//! lose their rank and spread, and the run warns naming the epoch, logs the
//! figures in `metrics.jsonl` and reports them in its summary; a method
//! that keeps its features spread (regressing a random projection of the
//! input) raises no warning.

use ssl_core::method::{Batch, BatchSource, Method, Output};
use ssl_core::optim::OptimizerConfig;
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_core::Result;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// A linear encoder 16 → 32; `collapse`: its loss pulls every output to
/// the same point, else towards a fixed random projection of the input.
struct Toy {
    enc: nn::Linear,
    target: Tensor,
    collapse: bool,
}

impl Method for Toy {
    fn name(&self) -> &'static str {
        "toy"
    }
    fn loss(&self, batch: &Batch, _train: bool) -> Result<Output> {
        let f = self.enc.forward(&batch.views[0]);
        let want = if self.collapse { Tensor::ones_like(&f) } else { batch.views[0].matmul(&self.target) };
        Ok(Output::new(f.mse_loss(&want, tch::Reduction::Mean)).with_features(f))
    }
    fn features(&self, x: &Tensor) -> Tensor {
        self.enc.forward(x)
    }
}

/// Eight batches of 64 Gaussian inputs per epoch (the same every epoch).
struct Noise {
    data: Vec<f32>,
}

impl Noise {
    fn new() -> Self {
        tch::manual_seed(5);
        Self { data: Vec::<f32>::try_from(Tensor::randn([8 * 64 * 16], (Kind::Float, Device::Cpu))).unwrap() }
    }
}

impl BatchSource for Noise {
    fn batches_per_epoch(&self) -> usize {
        8
    }
    fn batch_size(&self) -> usize {
        64
    }
    fn batch(&self, _epoch: usize, index: usize) -> Result<Batch> {
        let rows = &self.data[index * 64 * 16..(index + 1) * 64 * 16];
        Ok(Batch { views: vec![Tensor::from_slice(rows).reshape([64, 16])], labels: None })
    }
}

fn run(collapse: bool, dir: &std::path::Path) -> ssl_core::trainer::TrainSummary {
    tch::manual_seed(3);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let enc = nn::linear(vs.root() / "enc", 16, 32, Default::default());
    let target = Tensor::randn([16, 32], (Kind::Float, Device::Cpu));
    let mut m = Toy { enc, target, collapse };
    let cfg = TrainConfig {
        epochs: 6,
        optimizer: OptimizerConfig::sgd(0.5, 0.0),
        warmup_epochs: 0,
        checkpoint_every: 0,
        log_every: 4,
        bf16: false,
        ..TrainConfig::default()
    };
    let t = Trainer::new(cfg, Device::Cpu, dir, serde_json::json!({}));
    t.fit(&mut m, &mut vs, &Noise::new(), false).expect("training")
}

#[test]
fn a_collapsing_run_is_named_and_a_healthy_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let bad = run(true, dir.path());
    let c = bad.collapse.expect("collapse figures of the last epoch");
    let first = bad.collapse_warnings.first().expect("a collapse warning");
    assert!(first.contains("collapsing at epoch 2") && first.contains("RankMe"), "{first}");
    let log = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let epochs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r.get("epoch_loss").is_some())
        .collect();
    assert_eq!(epochs.len(), 6);
    assert!(epochs.iter().all(|r| r["rankme"].is_f64() && r["normalized_std"].is_f64()));
    let first_rank = epochs[0]["rankme"].as_f64().unwrap();
    let last_rank = epochs[5]["rankme"].as_f64().unwrap();
    assert!(last_rank < 0.5 * first_rank, "the rank falls: {first_rank} then {last_rank}");
    assert_eq!(c.rankme, last_rank, "the summary holds the last epoch's figures");
    assert!(c.normalized_std < epochs[0]["normalized_std"].as_f64().unwrap(), "the spread falls too");

    let dir = tempfile::tempdir().unwrap();
    let good = run(false, dir.path());
    assert!(good.collapse_warnings.is_empty(), "{:?}", good.collapse_warnings);
    let c = good.collapse.unwrap();
    assert!(c.rankme > 8.0, "{c:?}");
}

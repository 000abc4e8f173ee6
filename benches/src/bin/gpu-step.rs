//! Compute-only training steps on a GPU (issue 17, point 5): the batch is
//! already on the device, so the time is forward, loss, backward and
//! optimizer step alone, under bf16 autocast as `train-*` runs on CUDA.
//! `benches/reference/gpu_step.py` runs the same models in PyTorch eager and
//! with `torch.compile`; `tools/device/perf_gpu.sh` runs both.
//!
//! Cases (one per run, `gpu-step CASE [BATCH] [STEPS]`):
//! - `simclr`: CIFAR-stem ResNet-18, SimCLR head and NT-Xent (0.5), SGD,
//!   channels-last; BATCH images of 32 px, two views each (default 512).
//! - `mae`: MAE with a ViT-S/16 encoder at 224 px and the light decoder
//!   (2 blocks, width 384), AdamW; BATCH images (default 128).
//! - `bert` / `bert-dense`: BERT-base MLM, 15% of positions labelled, AdamW;
//!   BATCH sequences of 128 tokens (default 64). `bert` predicts only the
//!   labelled positions (ssl-rs's sparse head), `bert-dense` every position
//!   as transformers does, so the pair gives the sparse head's gain.
//!
//! Prints one line, `RESULT {json}`, with the mean step time over STEPS
//! steps (default 50) after 10 warm-up steps, and items per second.
//! `CUDNN_BENCHMARK=1` turns cuDNN's autotuner on; `SYNC_EACH_STEP=1`
//! adds the trainer's per-step check (see `trainer_check`); `FUSED=0` takes
//! the per-parameter optimizer path.

use ssl_core::amp::bf16_autocast;
use ssl_core::mae::{Mae, MaeConfig};
use ssl_core::optim::{Optimizer, OptimizerConfig};
use ssl_core::vit::VitConfig;
use ssl_core::{Batch, Method};
use ssl_text::bert::{BertConfig, BertForMaskedLm};
use ssl_vision::backbone::channels_last_;
use ssl_vision::simclr::{SimClr, SimClrConfig};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let case = args.first().map(String::as_str).unwrap_or("");
    let num = |i: usize, default: i64| -> i64 {
        args.get(i)
            .map(|s| s.parse().unwrap_or_else(|_| fail(&format!("not a number: {s}"))))
            .unwrap_or(default)
    };
    if !tch::Cuda::is_available() {
        fail("no CUDA device: gpu-step times GPU steps only");
    }
    let device = Device::Cuda(0);
    // cuDNN's autotuner, off by default as in train-vision and PyTorch.
    tch::Cuda::cudnn_set_benchmark(std::env::var("CUDNN_BENCHMARK").is_ok_and(|v| v == "1"));
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let sync = std::env::var("SYNC_EACH_STEP").is_ok_and(|v| v == "1");
    let fused = !std::env::var("FUSED").is_ok_and(|v| v == "0");
    let (batch, items_per_sample, unit): (i64, i64, &str);
    let mut step: Box<dyn FnMut() -> Tensor>;
    match case {
        "simclr" => {
            batch = num(1, 512);
            (items_per_sample, unit) = (1, "images");
            let model = SimClr::new(&vs.root(), &SimClrConfig::resnet18_cifar(3));
            channels_last_(&vs);
            let mut opt = Optimizer::from_var_store(&OptimizerConfig::sgd(0.1, 1e-6), &vs).with_fused(fused);
            let views = (0..2).map(|_| Tensor::randn([batch, 3, 32, 32], (Kind::Float, device))).collect();
            let data = Batch { views, labels: None };
            step = Box::new(move || {
                opt.zero_grad();
                let loss = bf16_autocast(true, || model.loss(&data, true)).expect("simclr loss").loss;
                loss.backward();
                trainer_check(sync, &opt, &loss);
                opt.step(0.1);
                loss
            });
        }
        "mae" => {
            batch = num(1, 128);
            (items_per_sample, unit) = (1, "images");
            let model = Mae::new(&vs.root(), &MaeConfig::light(VitConfig::small(224, 16)));
            let mut opt =
                Optimizer::from_var_store(&OptimizerConfig::adamw(1.5e-4, 0.05), &vs).with_fused(fused);
            let views = vec![Tensor::randn([batch, 3, 224, 224], (Kind::Float, device))];
            let data = Batch { views, labels: None };
            step = Box::new(move || {
                opt.zero_grad();
                let loss = bf16_autocast(true, || model.loss(&data, true)).expect("mae loss").loss;
                loss.backward();
                trainer_check(sync, &opt, &loss);
                opt.step(1.5e-4);
                loss
            });
        }
        "bert" | "bert-dense" => {
            batch = num(1, 64);
            let t = 128;
            (items_per_sample, unit) = (t, "tokens");
            let model = BertForMaskedLm::new(&vs.root(), &BertConfig::base(30_522)).expect("valid config");
            let mut opt =
                Optimizer::from_var_store(&OptimizerConfig::adamw(1e-4, 0.01), &vs).with_fused(fused);
            let ids = Tensor::randint_low(1000, 30_000, [batch, t], (Kind::Int64, device));
            let picked = Tensor::rand([batch, t], (Kind::Float, device)).lt(0.15);
            let labels = ids.where_self(&picked, &Tensor::full_like(&ids, -100));
            let attn = Tensor::ones([batch, t], (Kind::Int64, device));
            let dense = case == "bert-dense";
            step = Box::new(move || {
                opt.zero_grad();
                let loss = bf16_autocast(true, || {
                    if dense {
                        let logits = model.logits(&ids, None, Some(&attn), false, true).expect("shapes");
                        logits.to_kind(Kind::Float).view([-1, 30_522]).cross_entropy_loss::<Tensor>(
                            &labels.view([-1]),
                            None,
                            tch::Reduction::Mean,
                            -100,
                            0.0,
                        )
                    } else {
                        model.mlm_loss(&ids, Some(&attn), &labels, true).expect("shapes").0
                    }
                });
                loss.backward();
                trainer_check(sync, &opt, &loss);
                opt.step(1e-4);
                loss
            });
        }
        _ => fail("usage: gpu-step simclr|mae|bert|bert-dense [BATCH] [STEPS]"),
    }
    let steps = num(2, 50);
    for _ in 0..10 {
        let _ = step();
    }
    tch::Cuda::synchronize(0);
    let start = Instant::now();
    let mut last = Tensor::zeros([], (Kind::Float, device));
    for _ in 0..steps {
        last = step();
    }
    let loss = last.double_value(&[]);
    tch::Cuda::synchronize(0);
    let secs = start.elapsed().as_secs_f64();
    let step_ms = 1e3 * secs / steps as f64;
    let per_s = (batch * items_per_sample * steps) as f64 / secs;
    println!(
        "RESULT {}",
        serde_json::json!({
            "side": "ssl-rs", "case": case, "fused": fused, "sync_each_step": sync, "batch": batch, "steps": steps,
            "step_ms": step_ms, "per_s": per_s, "unit": unit, "loss": loss,
        })
    );
}

/// With `SYNC_EACH_STEP=1`, what the trainer reads between backward and
/// the update: the global gradient norm and whether the loss is finite
/// (one device synchronisation per step).
fn trainer_check(on: bool, opt: &Optimizer, loss: &Tensor) {
    if on {
        let _ = opt.grad_norm();
        let _ = loss.isfinite().all().int64_value(&[]);
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2)
}

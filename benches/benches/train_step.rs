//! Training steps on the CPU: SimCLR with a CIFAR-stem ResNet-18 (128
//! images, two views, SGD), and BERT-small (4 layers, width 512, 8 heads;
//! batch 8 of 128 tokens, 30,522-token vocabulary, AdamW) with the masked
//! language-model loss. Each step is forward, loss, backward and optimizer
//! step, on inputs made beforehand. `benches/reference/train_step.py` runs
//! the same models in PyTorch eager (torchvision's ResNet-18, lightly's
//! head and NT-Xent; transformers' `BertForMaskedLM`).
#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssl_core::optim::{Optimizer, OptimizerConfig};
use ssl_core::Method;
use ssl_text::bert::{BertConfig, BertForMaskedLm};
use ssl_vision::backbone::channels_last_;
use ssl_vision::simclr::{SimClr, SimClrConfig};
use std::time::Duration;
use tch::{nn, Device, Kind, Tensor};

fn bench_simclr(c: &mut Criterion) {
    ssl_benches::init();
    if !ssl_benches::wanted("cpu/simclr_step/resnet18_cifar/b128") {
        return;
    }
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SimClr::new(&vs.root(), &SimClrConfig::resnet18_cifar(3));
    // As train-vision runs on the CPU: channels-last convolutions.
    channels_last_(&vs);
    let mut opt = Optimizer::from_var_store(&OptimizerConfig::sgd(0.1, 1e-6), &vs);
    let batch = 128;
    // (The ResNet converts its input to channels-last itself.)
    let views = (0..2).map(|_| Tensor::randn([batch, 3, 32, 32], (Kind::Float, Device::Cpu))).collect();
    let batch_data = ssl_core::Batch { views, labels: None };
    let mut group = c.benchmark_group("cpu");
    group.sample_size(10).measurement_time(Duration::from_secs(60)).warm_up_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function("simclr_step/resnet18_cifar/b128", |b| {
        b.iter(|| {
            opt.zero_grad();
            let loss = model.loss(&batch_data, true).unwrap().loss;
            loss.backward();
            opt.step(0.1);
            loss.double_value(&[])
        })
    });
    group.finish();
}

/// BERT-small's shape (Turc et al.): 4 layers, width 512, 8 heads.
fn bert_small() -> BertConfig {
    BertConfig {
        hidden_size: 512,
        num_hidden_layers: 4,
        num_attention_heads: 8,
        intermediate_size: 2048,
        max_position_embeddings: 512,
        ..BertConfig::base(30_522)
    }
}

fn bench_bert(c: &mut Criterion) {
    ssl_benches::init();
    if !ssl_benches::wanted("cpu/bert_small_mlm_step/b8x128") {
        return;
    }
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = BertForMaskedLm::new(&vs.root(), &bert_small()).expect("valid config");
    let mut opt = Optimizer::from_var_store(&OptimizerConfig::adamw(1e-4, 0.01), &vs);
    let (b, t) = (8, 128);
    let ids = Tensor::randint_low(1000, 30_000, [b, t], (Kind::Int64, Device::Cpu));
    // 15% of positions predicted, the rest ignored (-100).
    let picked = Tensor::rand([b, t], (Kind::Float, Device::Cpu)).lt(0.15);
    let labels = ids.where_self(&picked, &Tensor::full_like(&ids, -100));
    let attn = Tensor::ones([b, t], (Kind::Int64, Device::Cpu));
    let mut group = c.benchmark_group("cpu");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements((b * t) as u64));
    group.bench_function("bert_small_mlm_step/b8x128", |bn| {
        bn.iter(|| {
            opt.zero_grad();
            let (loss, _, _) = model.mlm_loss(&ids, Some(&attn), &labels, true).expect("shapes");
            loss.backward();
            opt.step(1e-4);
            loss.double_value(&[])
        })
    });
    group.finish();
}

criterion_group!(benches, bench_simclr, bench_bert);
criterion_main!(benches);

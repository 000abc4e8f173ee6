//! Forward + backward of each loss on a batch of embeddings.
#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use criterion::{criterion_group, criterion_main, Criterion};
use ssl_core::losses;
use tch::{Device, Kind, Tensor};

fn bench_losses(c: &mut Criterion) {
    ssl_benches::init();
    let device = Device::Cpu;
    let (n, d) = (512, 128);
    tch::manual_seed(0);
    let z0 = Tensor::randn([n, d], (Kind::Float, device)).set_requires_grad(true);
    let z1 = Tensor::randn([n, d], (Kind::Float, device)).set_requires_grad(true);
    let queue = losses::l2_normalize(&Tensor::randn([4096, d], (Kind::Float, device)));
    let mut group = c.benchmark_group("cpu");
    type Case<'a> = (&'static str, Box<dyn Fn() -> Tensor + 'a>);
    let cases: Vec<Case> = vec![
        ("ntxent", Box::new(|| losses::nt_xent(&z0, &z1, 0.5))),
        ("infonce_queue4096", Box::new(|| losses::info_nce_queue(&z0, &z1, &queue, 0.2))),
        ("barlow", Box::new(|| losses::barlow_twins(&z0, &z1, 5e-3))),
        ("vicreg", Box::new(|| losses::vicreg(&z0, &z1, 25.0, 25.0, 1.0, 1e-4))),
    ];
    for (name, f) in &cases {
        if !ssl_benches::wanted(&format!("cpu/{name}/{n}x{d}")) {
            continue;
        }
        group.bench_function(format!("{name}/{n}x{d}"), |b| {
            b.iter(|| {
                let loss = f();
                loss.backward();
                loss.double_value(&[])
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_losses);
criterion_main!(benches);

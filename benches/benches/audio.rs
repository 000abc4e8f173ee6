//! The log-mel front end (n_fft 400, hop 160, 64 mels at 16 kHz, then
//! `ln(x + 1e-6)`) of 32 one-second clips on the CPU.
//! `benches/reference/audio.py` runs torchaudio's `MelSpectrogram` on the
//! same batch.
#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssl_audio::frontend::{LogMel, LogMelConfig};
use tch::{Device, Kind, Tensor};

fn bench_logmel(c: &mut Criterion) {
    ssl_benches::init();
    tch::manual_seed(0);
    let frontend = LogMel::new(&LogMelConfig::default(), Device::Cpu);
    let wave = Tensor::randn([32, 16_000], (Kind::Float, Device::Cpu)) * 0.1;
    let mut group = c.benchmark_group("cpu");
    group.throughput(Throughput::Elements(32));
    group.bench_function("logmel/32x1s", |b| b.iter(|| tch::no_grad(|| frontend.forward(&wave))));
    group.finish();
}

criterion_group!(benches, bench_logmel);
criterion_main!(benches);

//! SimCLR's two views of a batch on the CPU (rayon over samples, one seeded
//! generator per sample): 256 CIFAR-sized images at 32 px, and 64 images of
//! 256 px cropped to 224 px (with blur). `benches/reference/augment.py` does
//! the same with torchvision.transforms.v2 and a DataLoader with workers.
#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssl_benches::random_images;
use ssl_core::BatchSource;
use ssl_vision::augment::ViewAugment;
use ssl_vision::source::ViewSource;

fn bench_augment(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu");
    group.sample_size(20);
    for (side, crop, batch) in [(32usize, 32usize, 256usize), (256, 224, 64)] {
        if !ssl_benches::wanted(&format!("cpu/simclr_views/{crop}px/b{batch}")) {
            continue;
        }
        let set = random_images(batch * 4, side, 0);
        let source = ViewSource::new(&set, ViewAugment::simclr(crop), batch, 0);
        let mut i = 0;
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("simclr_views/{crop}px/b{batch}"), |b| {
            b.iter(|| {
                i += 1;
                source.batch(i / 4, i % 4).expect("views")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_augment);
criterion_main!(benches);

//! SimCLR's two views of a batch on the CPU (rayon over samples, one seeded
//! generator per sample): 256 CIFAR-sized images at 32 px, and 64 images of
//! 256 px cropped to 224 px (with blur). `benches/reference/augment.py` does
//! the same with torchvision.transforms.v2 and a DataLoader with workers.
//! And a folder of JPEGs at ImageNet's size (2,000 files of 500×375,
//! quality 90; `ssl_benches::jpeg_folder`) streamed as `train-vision
//! --stream` reads it: each batch of 64 files decoded and made into two
//! 224 px views (the reference: torchvision's `ImageFolder` with PIL's
//! decoder and the same v2 views in a DataLoader).
#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssl_benches::random_images;
use ssl_core::BatchSource;
use ssl_vision::augment::ViewAugment;
use ssl_vision::source::ViewSource;
use ssl_vision::stream::{index_folder, StreamingViewSource};

fn bench_augment(c: &mut Criterion) {
    ssl_benches::init();
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

fn bench_jpeg_folder(c: &mut Criterion) {
    ssl_benches::init();
    let (crop, batch) = (224usize, 64usize);
    let id = format!("cpu/jpeg_folder_views/{crop}px/b{batch}");
    if !ssl_benches::wanted(&id) {
        return;
    }
    let index = index_folder(&ssl_benches::jpeg_folder(2000)).expect("the bench's JPEG folder");
    let aug = ViewAugment::simclr(crop);
    let source = StreamingViewSource::new(&index.train, vec![aug.clone(), aug], batch, 0);
    let per_epoch = source.batches_per_epoch();
    let mut i = 0;
    let mut group = c.benchmark_group("cpu");
    group.sample_size(20);
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function(format!("jpeg_folder_views/{crop}px/b{batch}"), |b| {
        b.iter(|| {
            i += 1;
            source.batch(i / per_epoch, i % per_epoch).expect("views")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_augment, bench_jpeg_folder);
criterion_main!(benches);

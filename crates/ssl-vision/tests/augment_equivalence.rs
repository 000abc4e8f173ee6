//! The CPU augmentation path (image ops on each sample) and the tensor path
//! (batched ops on device-resident data) give the same views for the same
//! sampled parameters, and the two batch sources give the same batches.
//! Runs on the CPU device here; `--features cuda-tests` repeats it on CUDA.

use rand::SeedableRng;
use ssl_core::BatchSource;
use ssl_vision::augment::ViewAugment;
use ssl_vision::gpu_augment::{apply_batch, GpuViewSource};
use ssl_vision::source::{stack, ViewSource};
use ssl_vision::transforms::ImageU8;
use tch::{Device, Kind, Tensor};

fn random_images(n: usize, c: usize, h: usize, w: usize) -> Vec<ImageU8> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    (0..n)
        .map(|_| ImageU8 { c, h, w, data: (0..c * h * w).map(|_| rand::Rng::gen(&mut rng)).collect() })
        .collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_device(Device::Cpu) - b.to_device(Device::Cpu)).abs().max().double_value(&[])
}

fn check_paths_agree(device: Device) {
    // SimCLR's pipeline at 40 px (blur on), plus solarisation, so that
    // every operation is exercised.
    let aug = ViewAugment { solarize_p: 0.3, ..ViewAugment::simclr(40) };
    let imgs = random_images(24, 3, 48, 44);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let params: Vec<_> = imgs.iter().map(|i| aug.sample(i.h, i.w, &mut rng)).collect();
    assert!(params.iter().any(|p| p.blur_sigma.is_some()) && params.iter().any(|p| p.solarize));
    assert!(params.iter().any(|p| p.gray) && params.iter().any(|p| p.flip));
    let cpu: Vec<Vec<f32>> = imgs.iter().zip(&params).map(|(i, p)| aug.apply(i, p)).collect();
    let cpu = stack(&cpu.iter().map(Vec::as_slice).collect::<Vec<_>>(), 3, 40);
    let flat: Vec<u8> = imgs.iter().flat_map(|i| i.data.clone()).collect();
    let batch = Tensor::from_slice(&flat).reshape([24, 3, 48, 44]).to_device(device);
    let gpu = apply_batch(&aug, &batch, &params);
    assert_eq!(gpu.size(), [24, 3, 40, 40]);
    assert_eq!(gpu.kind(), Kind::Float);
    let d = max_diff(&cpu, &gpu);
    // Normalised units (x / 0.22): 2e-4 is about 5e-5 in pixel values.
    assert!(d < 2e-4, "CPU and tensor paths differ by {d}");
}

fn check_sources_agree(device: Device) {
    let d = ssl_vision::data::bundled_mnist5k().unwrap();
    let cpu = ViewSource::new(&d.train, ViewAugment::digits(28), 64, 5);
    let gpu = GpuViewSource::new(&d.train, ViewAugment::digits(28), 64, 5, device).unwrap();
    assert_eq!(cpu.batches_per_epoch(), gpu.batches_per_epoch());
    for (epoch, index) in [(0, 0), (3, 17)] {
        let a = cpu.batch(epoch, index).unwrap();
        let b = gpu.batch(epoch, index).unwrap();
        assert!(a.labels.as_ref().unwrap().equal(&b.labels.as_ref().unwrap().to_device(Device::Cpu)));
        for v in 0..2 {
            let diff = max_diff(&a.views[v], &b.views[v]);
            assert!(diff < 2e-4, "epoch {epoch} batch {index} view {v}: {diff}");
        }
    }
}

/// BYOL's asymmetric pair on colour images: each source gives view 0 from
/// the first augmentation and view 1 from the second, identically.
fn check_asymmetric_sources_agree(device: Device) {
    let imgs = random_images(16, 3, 48, 48);
    let set = ssl_vision::data::ImageSet { labels: (0..16).collect(), images: imgs };
    let views = ViewAugment::preset("byol", 40).unwrap();
    let cpu = ViewSource::with_views(&set, views.clone(), 8, 3);
    let gpu = GpuViewSource::with_views(&set, views, 8, 3, device).unwrap();
    for index in 0..2 {
        let a = cpu.batch(1, index).unwrap();
        let b = gpu.batch(1, index).unwrap();
        assert_eq!(a.views.len(), 2);
        for v in 0..2 {
            let diff = max_diff(&a.views[v], &b.views[v]);
            assert!(diff < 2e-4, "batch {index} view {v}: {diff}");
        }
        // The views differ: view 0 is always blurred, view 1 rarely.
        assert!(max_diff(&a.views[0], &a.views[1]) > 0.1);
    }
}

#[test]
fn asymmetric_sources_agree_on_cpu() {
    check_asymmetric_sources_agree(Device::Cpu);
}

#[test]
fn cpu_and_tensor_paths_agree_on_cpu() {
    check_paths_agree(Device::Cpu);
}

#[test]
fn cpu_and_device_sources_agree_on_cpu() {
    check_sources_agree(Device::Cpu);
}

#[test]
fn gpu_source_rejects_mixed_sizes() {
    let mut imgs = random_images(3, 3, 8, 8);
    imgs[2] = random_images(1, 3, 9, 8).remove(0);
    let set = ssl_vision::data::ImageSet { images: imgs, labels: vec![0, 1, 2] };
    let err = GpuViewSource::new(&set, ViewAugment::simclr(8), 2, 0, Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("image 2 is 3x9x8"), "{err}");
}

#[cfg(feature = "cuda-tests")]
#[test]
fn cpu_and_tensor_paths_agree_on_cuda() {
    check_paths_agree(Device::Cuda(0));
    check_sources_agree(Device::Cuda(0));
    check_asymmetric_sources_agree(Device::Cuda(0));
}

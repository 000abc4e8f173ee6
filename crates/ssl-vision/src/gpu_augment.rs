//! Augmentation as whole-batch tensor operations, so it runs where the
//! model runs (GPU-resident data, no CPU decode or copy per step), with the
//! same semantics as the CPU path in [`crate::augment`]: the parameters are
//! sampled by the same [`ViewAugment::sample`] from the same per-sample RNG,
//! then applied here with sampling grids (crop and resize), per-sample
//! blends (colour jitter), grouped convolutions (blur) and selects.
//! `tests/augment_equivalence.rs` checks both paths give the same views.

use crate::augment::{ColorOp, ViewAugment, ViewParams};
use crate::data::ImageSet;
use ssl_core::augment::sample_rng;
use ssl_core::{Batch, BatchSource};
use tch::{Device, Kind, Tensor};

/// A 1-D tensor from a slice, on `device`. The copy is asynchronous: a
/// blocking copy would wait for every kernel queued on the stream (the
/// training step running meanwhile), and a batch makes dozens of these.
fn upload<T: tch::kind::Element>(v: &[T], device: Device) -> Tensor {
    Tensor::from_slice(v).to_device_(device, T::KIND, true, false)
}

/// Per-sample scalar broadcast over `[B, C, H, W]`.
fn per_sample(v: &[f32], device: Device) -> Tensor {
    upload(v, device).reshape([-1, 1, 1, 1])
}

/// Per-sample boolean broadcast over `[B, C, H, W]`.
fn per_sample_mask(v: &[bool], device: Device) -> Tensor {
    let f: Vec<f32> = v.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
    per_sample(&f, device).gt(0.5)
}

/// Grayscale `[B, 1, H, W]` of `[B, C, H, W]` (torchvision's weights).
fn gray(x: &Tensor) -> Tensor {
    if x.size()[1] == 1 {
        return x.shallow_clone();
    }
    let w = upload(&[0.2989f32, 0.587, 0.114], x.device()).reshape([1, 3, 1, 1]);
    (x * w).sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
}

/// `clamp(f * a + (1 - f) * b)` with per-sample `f`.
fn blend(a: &Tensor, b: &Tensor, f: &Tensor) -> Tensor {
    (a * f + b * (-f + 1.0)).clamp(0.0, 1.0)
}

/// Hue shift of RGB `[B, 3, H, W]` by per-sample `f` (turns), as
/// torchvision's `adjust_hue` on tensors.
fn hue(x: &Tensor, f: &Tensor) -> Tensor {
    let (r, g, b) = (x.narrow(1, 0, 1), x.narrow(1, 1, 1), x.narrow(1, 2, 1));
    let maxc = x.amax([1i64].as_slice(), true);
    let minc = x.amin([1i64].as_slice(), true);
    let eqc = maxc.eq_tensor(&minc);
    let cr = &maxc - &minc;
    let ones = maxc.ones_like();
    let s = cr
        .divide(&maxc.where_self(&eqc.logical_not(), &ones))
        .where_self(&eqc.logical_not(), &maxc.zeros_like());
    let crd = ones.where_self(&eqc, &cr);
    let rc = (&maxc - &r) / &crd;
    let gc = (&maxc - &g) / &crd;
    let bc = (&maxc - &b) / &crd;
    let hr = (&bc - &gc) * maxc.eq_tensor(&r).to_kind(Kind::Float);
    let hg = (&rc - &bc + 2.0) * maxc.eq_tensor(&g).logical_and(&maxc.ne_tensor(&r)).to_kind(Kind::Float);
    let hb = (&gc - &rc + 4.0) * maxc.ne_tensor(&g).logical_and(&maxc.ne_tensor(&r)).to_kind(Kind::Float);
    let h = ((hr + hg + hb) / 6.0 + 1.0).fmod(1.0);
    let h = (h + f).remainder(1.0);
    let v = maxc;
    let i6 = (&h * 6.0).floor();
    let fr = &h * 6.0 - &i6;
    let i = i6.to_kind(Kind::Int64).remainder(6);
    let p = (&v * (-&s + 1.0)).clamp(0.0, 1.0);
    let q = (&v * (-(&s * &fr) + 1.0)).clamp(0.0, 1.0);
    let t = (&v * (-(&s * (-&fr + 1.0)) + 1.0)).clamp(0.0, 1.0);
    let pick = |choices: [&Tensor; 6]| {
        let mut out = choices[5].shallow_clone();
        for (k, c) in choices.iter().enumerate().take(5) {
            out = c.where_self(&i.eq(k as i64), &out);
        }
        out
    };
    let r2 = pick([&v, &q, &p, &p, &t, &v]);
    let g2 = pick([&t, &v, &v, &q, &p, &p]);
    let b2 = pick([&p, &p, &t, &v, &v, &q]);
    Tensor::cat(&[r2, g2, b2], 1)
}

/// Separable Gaussian blur with per-sample sigma (0: none) and reflect
/// padding, as grouped convolutions.
fn blur(x: &Tensor, sigmas: &[f32], k: usize) -> Tensor {
    let (b, c, h, w) = x.size4().expect("blur needs [B, C, H, W]");
    let r = (k / 2) as i64;
    let mut weights = Vec::with_capacity(sigmas.len() * k);
    for &s in sigmas {
        if s <= 0.0 {
            weights.extend((0..k).map(|i| if i as i64 == r { 1.0f32 } else { 0.0 }));
        } else {
            let row: Vec<f32> = (-r..=r).map(|i| (-((i * i) as f32) / (2.0 * s * s)).exp()).collect();
            let sum: f32 = row.iter().sum();
            weights.extend(row.iter().map(|v| v / sum));
        }
    }
    let kern = upload(&weights, x.device()).reshape([b, 1, k as i64]).repeat([1, c, 1]).reshape([
        b * c,
        1,
        k as i64,
    ]);
    let flat = x.reshape([1, b * c, h, w]);
    let horiz = flat.reflection_pad2d([r, r, 0, 0]).conv2d(
        &kern.unsqueeze(2),
        None::<&Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        b * c,
    );
    let vert = horiz.reflection_pad2d([0, 0, r, r]).conv2d(
        &kern.unsqueeze(3),
        None::<&Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        b * c,
    );
    vert.reshape([b, c, h, w])
}

/// Applies sampled parameters to a batch: `images` is `[B, C, H, W]`,
/// uint8 or float in `[0, 1]`; the result is normalised,
/// `[B, C, size, size]`, on the images' device.
///
/// # Panics
/// If `params` does not have one entry per image.
pub fn apply_batch(aug: &ViewAugment, images: &Tensor, params: &[ViewParams]) -> Tensor {
    let (b, c, h, w) = images.size4().expect("images must be [B, C, H, W]");
    assert_eq!(params.len() as i64, b, "one parameter set per image");
    let dev = images.device();
    let x = if images.kind() == Kind::Uint8 {
        images.to_kind(Kind::Float) / 255.0
    } else {
        images.to_kind(Kind::Float)
    };
    // Crop and resize: source coordinates as ATen's upsample_bilinear2d
    // (align_corners=False, clamped inside the crop), sampled with
    // grid_sample (align_corners=True maps -1..1 to pixel centres 0..W-1).
    let out = aug.size as i64;
    let column = |f: &dyn Fn(&ViewParams) -> f32| {
        upload(&params.iter().map(f).collect::<Vec<_>>(), dev).reshape([b, 1])
    };
    let (top, left) = (column(&|p| p.crop.0 as f32), column(&|p| p.crop.1 as f32));
    let (ch, cw) = (column(&|p| p.crop.2 as f32), column(&|p| p.crop.3 as f32));
    let centres = Tensor::arange(out, (Kind::Float, dev)).reshape([1, out]) + 0.5;
    // Source coordinate inside the crop, clamped to it, then into the image
    // and normalised: [B, out] per axis.
    let axis = |size: &Tensor, offset: &Tensor, n: i64| {
        let src = (&centres * (size / out as f64) - 0.5).clamp_min(0.0);
        let src = src.minimum(&(size - 1.0)) + offset;
        if n > 1 {
            src * (2.0 / (n - 1) as f64) - 1.0
        } else {
            src.zeros_like()
        }
    };
    let gy = axis(&ch, &top, h).reshape([b, out, 1]).expand([b, out, out], false);
    let gx = axis(&cw, &left, w).reshape([b, 1, out]).expand([b, out, out], false);
    let grid = Tensor::stack(&[gx, gy], 3);
    let mut x = Tensor::grid_sampler(&x, &grid, 0, 1, true);
    let flips: Vec<bool> = params.iter().map(|p| p.flip).collect();
    if flips.iter().any(|&f| f) {
        x = x.flip([3]).where_self(&per_sample_mask(&flips, dev), &x);
    }
    // Colour operations in each sample's own order: position k applies
    // every sample's k-th operation, selected per sample.
    let longest = params.iter().map(|p| p.color.len()).max().unwrap_or(0);
    for k in 0..longest {
        let op_at = |p: &ViewParams| p.color.get(k).copied();
        let mut next = x.shallow_clone();
        for which in 0..4 {
            let mut factors = vec![0f32; b as usize];
            let mut chosen = vec![false; b as usize];
            for (s, p) in params.iter().enumerate() {
                match (which, op_at(p)) {
                    (0, Some(ColorOp::Brightness(f)))
                    | (1, Some(ColorOp::Contrast(f)))
                    | (2, Some(ColorOp::Saturation(f)))
                    | (3, Some(ColorOp::Hue(f))) => {
                        factors[s] = f;
                        chosen[s] = true;
                    }
                    _ => {}
                }
            }
            if !chosen.iter().any(|&v| v) || (c == 1 && which >= 2) {
                continue;
            }
            let f = per_sample(&factors, dev);
            let y = match which {
                0 => (&x * &f).clamp(0.0, 1.0),
                1 => blend(&x, &gray(&x).mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float), &f),
                2 => blend(&x, &gray(&x), &f),
                _ => hue(&x, &f),
            };
            next = y.where_self(&per_sample_mask(&chosen, dev), &next);
        }
        x = next;
    }
    let grays: Vec<bool> = params.iter().map(|p| p.gray).collect();
    if c == 3 && grays.iter().any(|&g| g) {
        x = gray(&x).expand([b, 3, out, out], false).where_self(&per_sample_mask(&grays, dev), &x);
    }
    if let Some((_, _, k)) = aug.blur {
        let sigmas: Vec<f32> = params.iter().map(|p| p.blur_sigma.unwrap_or(0.0)).collect();
        if sigmas.iter().any(|&s| s > 0.0) {
            x = blur(&x, &sigmas, k);
        }
    }
    let sol: Vec<bool> = params.iter().map(|p| p.solarize).collect();
    if sol.iter().any(|&s| s) {
        let flipped = (-&x + 1.0).where_self(&x.ge(0.5), &x);
        x = flipped.where_self(&per_sample_mask(&sol, dev), &x);
    }
    let mean = upload(&channel_values(&aug.mean, c), dev).reshape([1, c, 1, 1]);
    let std = upload(&channel_values(&aug.std, c), dev).reshape([1, c, 1, 1]);
    (x - mean) / std
}

/// One value per channel (a single value applies to all).
fn channel_values(v: &[f32], c: i64) -> Vec<f32> {
    (0..c as usize).map(|i| v[i.min(v.len() - 1)]).collect()
}

/// A batch source whose images live on the device as one uint8 tensor and
/// whose views are made there by [`apply_batch`]. It draws the same
/// parameters as [`crate::source::ViewSource`] with the same seed, so both
/// sources give the same batches.
pub struct GpuViewSource {
    /// Images `[N, C, H, W]` (uint8) and labels `[N]` on the device. In a
    /// mutex because tch tensors are `Send` but not `Sync`, and batches are
    /// built on the trainer's producer thread.
    data: std::sync::Mutex<(Tensor, Tensor)>,
    /// `N, C, H, W`.
    dims: [i64; 4],
    augs: Vec<ViewAugment>,
    batch_size: usize,
    seed: u64,
}

impl GpuViewSource {
    /// Uploads `set` (all images the same size) to `device`; two views per
    /// sample from `aug`.
    pub fn new(
        set: &ImageSet,
        aug: ViewAugment,
        batch_size: usize,
        seed: u64,
        device: Device,
    ) -> crate::Result<Self> {
        Self::with_views(set, vec![aug.clone(), aug], batch_size, seed, device)
    }

    /// One view per entry of `augs` (asymmetric views, e.g. BYOL's).
    pub fn with_views(
        set: &ImageSet,
        augs: Vec<ViewAugment>,
        batch_size: usize,
        seed: u64,
        device: Device,
    ) -> crate::Result<Self> {
        let first = set.images.first().ok_or_else(|| crate::Error::Config("empty image set".into()))?;
        if let Some(bad) = set.images.iter().position(|i| (i.c, i.h, i.w) != (first.c, first.h, first.w)) {
            return Err(crate::Error::Config(format!(
                "GPU augmentation needs images of one size: image 0 is {}x{}x{}, image {bad} is {}x{}x{}",
                first.c, first.h, first.w, set.images[bad].c, set.images[bad].h, set.images[bad].w
            )));
        }
        let flat: Vec<u8> = set.images.iter().flat_map(|i| i.data.iter().copied()).collect();
        let dims = [set.len() as i64, first.c as i64, first.h as i64, first.w as i64];
        let images = Tensor::from_slice(&flat).reshape(dims).to_device(device);
        let labels = Tensor::from_slice(&set.labels).to_device(device);
        Ok(Self {
            data: std::sync::Mutex::new((images, labels)),
            dims,
            augs,
            batch_size: batch_size.max(1),
            seed,
        })
    }
}

impl BatchSource for GpuViewSource {
    fn batches_per_epoch(&self) -> usize {
        self.dims[0] as usize / self.batch_size
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn sample_unit(&self) -> &'static str {
        "images"
    }

    fn batch(&self, epoch: usize, index: usize) -> ssl_core::Result<Batch> {
        let order = crate::source::epoch_order(self.dims[0] as usize, self.seed, epoch);
        let ids = &order[index * self.batch_size..(index + 1) * self.batch_size];
        let (h, w) = (self.dims[2], self.dims[3]);
        // Same RNG use as the CPU source: per sample, each view in turn.
        let mut per_view: Vec<Vec<ViewParams>> = vec![Vec::with_capacity(ids.len()); self.augs.len()];
        for &i in ids {
            let mut rng = sample_rng(self.seed, epoch, i);
            for (v, aug) in self.augs.iter().enumerate() {
                per_view[v].push(aug.sample(h as usize, w as usize, &mut rng));
            }
        }
        let data = self.data.lock().map_err(|_| ssl_core::Error::Data("GPU batch source poisoned".into()))?;
        let (images, labels) = &*data;
        let idx = upload(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), images.device());
        let imgs = images.index_select(0, &idx);
        let views = self.augs.iter().zip(&per_view).map(|(aug, ps)| apply_batch(aug, &imgs, ps)).collect();
        Ok(Batch { views, labels: Some(labels.index_select(0, &idx)) })
    }
}

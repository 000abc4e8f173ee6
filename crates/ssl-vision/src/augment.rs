//! Per-view augmentation pipelines for the CPU path: parameters are sampled
//! from a per-sample RNG ([`ViewAugment::sample`]), then applied
//! ([`ViewAugment::apply`]), so the sampling distributions and the operations
//! can be tested separately.
//!
//! SimCLR's pipeline (Chen et al., <https://arxiv.org/abs/2002.05709>,
//! appendix A): random resized crop (scale 0.08–1, ratio 3/4–4/3), flip
//! p=0.5, colour jitter (0.8s, 0.8s, 0.8s, 0.2s) with p=0.8 in random order,
//! grayscale p=0.2, Gaussian blur p=0.5 (ImageNet only). Also MoCo v2's,
//! BYOL's asymmetric pair, MAE's and one for digits: see
//! [`ViewAugment::preset`].

use crate::transforms::{self, ImageF, ImageU8};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Colour jitter strengths, as `torchvision.transforms.ColorJitter`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Jitter {
    /// Probability of applying the jitter at all.
    pub p: f64,
    /// Brightness factor in `[max(0, 1-b), 1+b]`.
    pub brightness: f64,
    /// Contrast factor in `[max(0, 1-c), 1+c]`.
    pub contrast: f64,
    /// Saturation factor in `[max(0, 1-s), 1+s]`.
    pub saturation: f64,
    /// Hue shift in `[-h, h]`.
    pub hue: f64,
}

/// One view's augmentation: crop, flip, jitter, grayscale, blur, solarize,
/// then normalisation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewAugment {
    /// Output height and width.
    pub size: usize,
    /// Range of the crop's area as a fraction of the image.
    pub crop_scale: (f64, f64),
    /// Range of the crop's aspect ratio (w / h).
    pub crop_ratio: (f64, f64),
    /// Probability of a horizontal flip.
    pub hflip_p: f64,
    /// Colour jitter, if any.
    pub jitter: Option<Jitter>,
    /// Probability of grayscale.
    pub gray_p: f64,
    /// Probability of a Gaussian blur, its sigma range, and kernel size.
    pub blur: Option<(f64, (f64, f64), usize)>,
    /// Probability of solarisation (threshold 0.5).
    pub solarize_p: f64,
    /// Per-channel mean for normalisation (one value: all channels).
    pub mean: Vec<f32>,
    /// Per-channel std for normalisation.
    pub std: Vec<f32>,
}

/// Colour operations in the order they are applied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ColorOp {
    /// Brightness factor.
    Brightness(f32),
    /// Contrast factor.
    Contrast(f32),
    /// Saturation factor.
    Saturation(f32),
    /// Hue shift.
    Hue(f32),
}

/// Everything random about one view.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewParams {
    /// Crop box: top, left, height, width.
    pub crop: (i64, i64, usize, usize),
    /// Horizontal flip.
    pub flip: bool,
    /// Colour operations, in order (empty when jitter is not applied).
    pub color: Vec<ColorOp>,
    /// Grayscale.
    pub gray: bool,
    /// Blur sigma, when blurred.
    pub blur_sigma: Option<f32>,
    /// Solarize.
    pub solarize: bool,
}

/// ImageNet channel statistics.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel statistics.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl ViewAugment {
    /// SimCLR's augmentation at `size` (blur only for `size > 32`, as the
    /// paper does for CIFAR), with ImageNet normalisation.
    pub fn simclr(size: usize) -> Self {
        Self {
            size,
            crop_scale: (0.08, 1.0),
            crop_ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip_p: 0.5,
            jitter: Some(Jitter { p: 0.8, brightness: 0.8, contrast: 0.8, saturation: 0.8, hue: 0.2 }),
            gray_p: 0.2,
            blur: (size > 32).then_some((0.5, (0.1, 2.0), (size / 10) | 1)),
            solarize_p: 0.0,
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
        }
    }

    /// For handwritten digits (MNIST): a milder crop (scale 0.3–1, since a
    /// digit is most of its image), no flip (mirrored digits are other
    /// symbols), brightness and contrast jitter, MNIST normalisation.
    pub fn digits(size: usize) -> Self {
        Self {
            size,
            crop_scale: (0.3, 1.0),
            crop_ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip_p: 0.0,
            jitter: Some(Jitter { p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.0, hue: 0.0 }),
            gray_p: 0.0,
            blur: None,
            solarize_p: 0.0,
            mean: vec![0.1307],
            std: vec![0.3081],
        }
    }

    /// MoCo v2's augmentation (He et al., <https://arxiv.org/abs/2003.04297>,
    /// its `aug_plus`): crop scale 0.2–1, flip, colour jitter (0.4, 0.4, 0.4,
    /// 0.1) with p=0.8, grayscale p=0.2, blur p=0.5 (sigma 0.1–2, only for
    /// `size > 32`, as for SimCLR). SimSiam uses it too.
    pub fn moco_v2(size: usize) -> Self {
        Self {
            crop_scale: (0.2, 1.0),
            jitter: Some(Jitter { p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1 }),
            ..Self::simclr(size)
        }
    }

    /// BYOL's asymmetric pair of views (Grill et al., table 6): crop scale
    /// 0.08–1, flip, colour jitter (0.4, 0.4, 0.2, 0.1) with p=0.8, grayscale
    /// p=0.2; the first view is always blurred and never solarized, the
    /// second is blurred with p=0.1 and solarized with p=0.2. Blur only for
    /// `size > 32`, as solo-learn's CIFAR recipe. MoCo v3, Barlow Twins and
    /// VICReg use the same pair.
    pub fn byol(size: usize) -> [Self; 2] {
        let base = Self {
            jitter: Some(Jitter { p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1 }),
            ..Self::simclr(size)
        };
        let blur = |p: f64| (size > 32).then_some((p, (0.1, 2.0), (size / 10) | 1));
        [
            Self { blur: blur(1.0), solarize_p: 0.0, ..base.clone() },
            Self { blur: blur(0.1), solarize_p: 0.2, ..base },
        ]
    }

    /// MAE's augmentation: crop scale 0.2–1 and flip, nothing else.
    pub fn mae(size: usize) -> Self {
        Self { crop_scale: (0.2, 1.0), jitter: None, gray_p: 0.0, blur: None, ..Self::simclr(size) }
    }

    /// Multi-crop's local views (Caron et al., SwAV
    /// <https://arxiv.org/abs/2006.09882>, and DINO): `n` crops of `size`
    /// pixels covering 5–40% of the image (DINO's `local_crops_scale`),
    /// otherwise as `base` (its colour operations; blur with p=0.5 where
    /// `base` blurs; never solarised).
    pub fn local_crops(base: &Self, n: usize, size: usize) -> Vec<Self> {
        let blur =
            (size > 32).then_some(()).and(base.blur).map(|(_, sigma, _)| (0.5, sigma, (size / 10) | 1));
        let local = Self { size, crop_scale: (0.05, 0.4), blur, solarize_p: 0.0, ..base.clone() };
        vec![local; n]
    }

    /// The local-crop side that goes with global views of `size` pixels:
    /// 96/224 of it, as DINO's crops, rounded up to a multiple of
    /// `multiple` (a ViT's patch size).
    pub fn local_size(size: usize, multiple: usize) -> usize {
        let m = multiple.max(1);
        (size * 96).div_ceil(224).div_ceil(m) * m
    }

    /// The views of a named preset: `simclr`, `moco-v2`, `byol` (two
    /// different views), `mae` or `digits`. Symmetric presets give the same
    /// augmentation twice.
    pub fn preset(name: &str, size: usize) -> Option<Vec<Self>> {
        let twice = |a: Self| vec![a.clone(), a];
        Some(match name {
            "simclr" => twice(Self::simclr(size)),
            "moco-v2" => twice(Self::moco_v2(size)),
            "byol" => Self::byol(size).to_vec(),
            "mae" => twice(Self::mae(size)),
            "digits" => twice(Self::digits(size)),
            _ => return None,
        })
    }

    /// Samples a crop box like `RandomResizedCrop.get_params`: ten tries at
    /// a box with area fraction in `crop_scale` and log-uniform aspect ratio
    /// in `crop_ratio`, else a centre crop.
    pub fn sample_crop(&self, h: usize, w: usize, rng: &mut impl Rng) -> (i64, i64, usize, usize) {
        let area = (h * w) as f64;
        let (lr0, lr1) = (self.crop_ratio.0.ln(), self.crop_ratio.1.ln());
        for _ in 0..10 {
            let target = area * rng.gen_range(self.crop_scale.0..=self.crop_scale.1);
            let ratio = rng.gen_range(lr0..=lr1).exp();
            let cw = (target * ratio).sqrt().round() as usize;
            let ch = (target / ratio).sqrt().round() as usize;
            if cw > 0 && cw <= w && ch > 0 && ch <= h {
                let top = rng.gen_range(0..=h - ch) as i64;
                let left = rng.gen_range(0..=w - cw) as i64;
                return (top, left, ch, cw);
            }
        }
        let in_ratio = w as f64 / h as f64;
        let (ch, cw) = if in_ratio < self.crop_ratio.0 {
            ((w as f64 / self.crop_ratio.0).round() as usize, w)
        } else if in_ratio > self.crop_ratio.1 {
            (h, (h as f64 * self.crop_ratio.1).round() as usize)
        } else {
            (h, w)
        };
        (((h - ch) / 2) as i64, ((w - cw) / 2) as i64, ch, cw)
    }

    /// Samples every random choice for one view of an `h × w` image.
    pub fn sample(&self, h: usize, w: usize, rng: &mut impl Rng) -> ViewParams {
        let crop = self.sample_crop(h, w, rng);
        let flip = rng.gen_bool(self.hflip_p);
        let mut color = Vec::new();
        if let Some(j) = &self.jitter {
            if rng.gen_bool(j.p) {
                let factor = |rng: &mut dyn rand::RngCore, s: f64| {
                    (rng.gen_range((1.0 - s).max(0.0)..=1.0 + s)) as f32
                };
                let mut order = [0, 1, 2, 3];
                order.shuffle(rng);
                for op in order {
                    match op {
                        0 if j.brightness > 0.0 => color.push(ColorOp::Brightness(factor(rng, j.brightness))),
                        1 if j.contrast > 0.0 => color.push(ColorOp::Contrast(factor(rng, j.contrast))),
                        2 if j.saturation > 0.0 => color.push(ColorOp::Saturation(factor(rng, j.saturation))),
                        3 if j.hue > 0.0 => color.push(ColorOp::Hue(rng.gen_range(-j.hue..=j.hue) as f32)),
                        _ => {}
                    }
                }
            }
        }
        let gray = rng.gen_bool(self.gray_p);
        let blur_sigma =
            self.blur.and_then(|(p, (s0, s1), _)| rng.gen_bool(p).then(|| rng.gen_range(s0..=s1) as f32));
        let solarize = rng.gen_bool(self.solarize_p);
        ViewParams { crop, flip, color, gray, blur_sigma, solarize }
    }

    /// Applies sampled parameters; returns the normalised view, `[C, size, size]`.
    pub fn apply(&self, img: &ImageU8, p: &ViewParams) -> Vec<f32> {
        let (top, left, ch, cw) = p.crop;
        let mut x = transforms::resized_crop(img, top, left, ch, cw, self.size, self.size);
        if p.flip {
            transforms::hflip(&mut x);
        }
        for op in &p.color {
            match *op {
                ColorOp::Brightness(f) => transforms::adjust_brightness(&mut x, f),
                ColorOp::Contrast(f) => transforms::adjust_contrast(&mut x, f),
                ColorOp::Saturation(f) => transforms::adjust_saturation(&mut x, f),
                ColorOp::Hue(f) => transforms::adjust_hue(&mut x, f),
            }
        }
        if p.gray {
            transforms::to_grayscale(&mut x);
        }
        if let (Some(sigma), Some((_, _, k))) = (p.blur_sigma, self.blur) {
            transforms::gaussian_blur(&mut x, k, sigma);
        }
        if p.solarize {
            transforms::solarize(&mut x, 0.5);
        }
        normalize(&mut x, &self.mean, &self.std);
        x.data
    }

    /// Samples and applies: one view.
    pub fn view(&self, img: &ImageU8, rng: &mut impl Rng) -> Vec<f32> {
        let p = self.sample(img.h, img.w, rng);
        self.apply(img, &p)
    }

    /// The evaluation transform: resize to `size × size` (bilinear) and
    /// normalise.
    pub fn eval_view(&self, img: &ImageU8) -> Vec<f32> {
        let mut x = transforms::resized_crop(img, 0, 0, img.h, img.w, self.size, self.size);
        normalize(&mut x, &self.mean, &self.std);
        x.data
    }
}

/// `(x - mean[c]) / std[c]`; a single mean/std applies to all channels.
pub fn normalize(x: &mut ImageF, mean: &[f32], std: &[f32]) {
    let n = x.h * x.w;
    for (c, plane) in x.data.chunks_mut(n).enumerate() {
        let (m, s) = (mean[c.min(mean.len() - 1)], std[c.min(std.len() - 1)]);
        plane.iter_mut().for_each(|v| *v = (*v - m) / s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn crop_boxes_follow_the_specified_distribution() {
        let aug = ViewAugment::simclr(32);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let (h, w) = (96, 96);
        let boxes: Vec<_> = (0..4000).map(|_| aug.sample_crop(h, w, &mut rng)).collect();
        let fractions: Vec<f64> = boxes.iter().map(|b| (b.2 * b.3) as f64 / (h * w) as f64).collect();
        // Every box lies inside the image.
        assert!(boxes
            .iter()
            .all(|b| b.0 >= 0 && b.1 >= 0 && b.0 as usize + b.2 <= h && b.1 as usize + b.3 <= w));
        // Area fractions within the scale range (rounding allows a little).
        assert!(fractions.iter().all(|&f| (0.07..=1.0).contains(&f)));
        // Uniform on [0.08, 1] has mean 0.54; rejection of boxes that do not
        // fit lowers it slightly.
        let mean = fractions.iter().sum::<f64>() / fractions.len() as f64;
        assert!((0.45..0.56).contains(&mean), "{mean}");
        // Aspect ratios stay within [3/4, 4/3] up to rounding.
        assert!(boxes.iter().all(|b| {
            let r = b.3 as f64 / b.2 as f64;
            r > 0.7 && r < 1.45
        }));
    }

    #[test]
    fn probabilities_match_the_preset() {
        let aug = ViewAugment::simclr(32);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let n = 5000;
        let ps: Vec<_> = (0..n).map(|_| aug.sample(32, 32, &mut rng)).collect();
        let frac = |f: &dyn Fn(&ViewParams) -> bool| ps.iter().filter(|p| f(p)).count() as f64 / n as f64;
        assert!((frac(&|p| p.flip) - 0.5).abs() < 0.03);
        assert!((frac(&|p| !p.color.is_empty()) - 0.8).abs() < 0.03);
        assert!((frac(&|p| p.gray) - 0.2).abs() < 0.03);
        assert_eq!(frac(&|p| p.blur_sigma.is_some()), 0.0);
        // The four jitter operations come in every order.
        let first_is_hue = frac(&|p| matches!(p.color.first(), Some(ColorOp::Hue(_))));
        assert!((first_is_hue - 0.2).abs() < 0.03, "{first_is_hue}");
        // Factors within range.
        assert!(ps.iter().flat_map(|p| p.color.iter()).all(|op| match *op {
            ColorOp::Brightness(f) | ColorOp::Contrast(f) | ColorOp::Saturation(f) =>
                (0.2..=1.8).contains(&f),
            ColorOp::Hue(h) => (-0.2..=0.2).contains(&h),
        }));
    }

    #[test]
    fn byol_views_are_asymmetric_as_in_the_paper() {
        let [a, b] = ViewAugment::byol(96);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let n = 5000;
        let pa: Vec<_> = (0..n).map(|_| a.sample(96, 96, &mut rng)).collect();
        let pb: Vec<_> = (0..n).map(|_| b.sample(96, 96, &mut rng)).collect();
        let frac = |ps: &[ViewParams], f: &dyn Fn(&ViewParams) -> bool| {
            ps.iter().filter(|p| f(p)).count() as f64 / n as f64
        };
        assert_eq!(frac(&pa, &|p| p.blur_sigma.is_some()), 1.0);
        assert_eq!(frac(&pa, &|p| p.solarize), 0.0);
        assert!((frac(&pb, &|p| p.blur_sigma.is_some()) - 0.1).abs() < 0.02);
        assert!((frac(&pb, &|p| p.solarize) - 0.2).abs() < 0.03);
        for ps in [&pa, &pb] {
            assert!((frac(ps, &|p| p.gray) - 0.2).abs() < 0.03);
            assert!((frac(ps, &|p| !p.color.is_empty()) - 0.8).abs() < 0.03);
            assert!(ps.iter().flat_map(|p| p.blur_sigma).all(|s| (0.1..=2.0).contains(&s)));
            assert!(ps.iter().flat_map(|p| p.color.iter()).all(|op| match *op {
                ColorOp::Saturation(f) => (0.8..=1.2).contains(&f),
                ColorOp::Brightness(f) | ColorOp::Contrast(f) => (0.6..=1.4).contains(&f),
                ColorOp::Hue(h) => (-0.1..=0.1).contains(&h),
            }));
        }
        // On CIFAR-sized images there is no blur, as solo-learn's recipe.
        let [a32, _] = ViewAugment::byol(32);
        assert!(a32.blur.is_none());
    }

    #[test]
    fn moco_v2_crops_are_larger_than_simclr_ones() {
        let aug = ViewAugment::moco_v2(96);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let ps: Vec<_> = (0..4000).map(|_| aug.sample(96, 96, &mut rng)).collect();
        let fractions: Vec<f64> = ps.iter().map(|p| (p.crop.2 * p.crop.3) as f64 / (96.0 * 96.0)).collect();
        assert!(fractions.iter().all(|&f| (0.19..=1.0).contains(&f)));
        // Uniform on [0.2, 1] has mean 0.6.
        let mean = fractions.iter().sum::<f64>() / fractions.len() as f64;
        assert!((0.53..0.62).contains(&mean), "{mean}");
        let blurred = ps.iter().filter(|p| p.blur_sigma.is_some()).count() as f64 / 4000.0;
        assert!((blurred - 0.5).abs() < 0.03);
        assert!(ps.iter().flat_map(|p| p.color.iter()).all(|op| match *op {
            ColorOp::Brightness(f) | ColorOp::Contrast(f) | ColorOp::Saturation(f) =>
                (0.6..=1.4).contains(&f),
            ColorOp::Hue(h) => (-0.1..=0.1).contains(&h),
        }));
    }

    #[test]
    fn presets_are_named_and_unknown_names_are_refused() {
        for name in ["simclr", "moco-v2", "byol", "mae", "digits"] {
            let views = ViewAugment::preset(name, 32).unwrap();
            assert_eq!(views.len(), 2);
            assert!(views.iter().all(|v| v.size == 32));
        }
        let byol = ViewAugment::preset("byol", 64).unwrap();
        assert_ne!(byol[0], byol[1]);
        assert!(ViewAugment::preset("autoaugment", 32).is_none());
    }

    #[test]
    fn views_have_the_output_shape_and_differ() {
        let img = ImageU8 { c: 1, h: 28, w: 28, data: (0..784).map(|i| (i % 256) as u8).collect() };
        let aug = ViewAugment::digits(28);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let a = aug.view(&img, &mut rng);
        let b = aug.view(&img, &mut rng);
        assert_eq!(a.len(), 784);
        assert_ne!(a, b);
        // Eval view of an unchanged-size image is just normalisation.
        let e = aug.eval_view(&img);
        assert!((e[1] - (1.0 / 255.0 - 0.1307) / 0.3081).abs() < 1e-6);
    }
}

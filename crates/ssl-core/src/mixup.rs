//! Mixup (Zhang et al. 2018, <https://arxiv.org/abs/1710.09412>) and
//! CutMix (Yun et al. 2019, <https://arxiv.org/abs/1905.04899>) with label
//! smoothing, for fine-tuning: the regularisers of MAE's and DeiT's ViT
//! recipes, with timm's `Mixup` semantics in its per-batch mode. Each batch
//! is mixed with itself reversed (sample `i` with sample `B - 1 - i`): with
//! probability `prob` it is mixed at all, then CutMix (with probability
//! `switch_prob` when both are on) pastes a box of the partner, else Mixup
//! blends the two. λ comes from `Beta(α, α)`; CutMix's box covers about
//! `1 - λ` of the image and λ is corrected to the box's clipped area. The
//! targets are the correspondingly mixed smoothed one-hot labels
//! (`1 - s + s/C` on the class, `s/C` elsewhere), scored with
//! [`soft_cross_entropy`].

use rand::Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// How to mix batches and smooth labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MixupConfig {
    /// Mixup's `α` (0: off; MAE and DeiT: 0.8).
    pub mixup_alpha: f64,
    /// CutMix's `α` (0: off; MAE and DeiT: 1.0).
    pub cutmix_alpha: f64,
    /// Probability that a batch is mixed at all (1.0).
    pub prob: f64,
    /// Probability of CutMix rather than Mixup when both are on (0.5).
    pub switch_prob: f64,
    /// Label smoothing `s` (0.1).
    pub label_smoothing: f64,
}

impl MixupConfig {
    /// MAE's fine-tuning values (timm's defaults there): Mixup 0.8, CutMix
    /// 1.0, always mixed, half of the batches each, smoothing 0.1.
    pub fn mae() -> Self {
        Self { mixup_alpha: 0.8, cutmix_alpha: 1.0, prob: 1.0, switch_prob: 0.5, label_smoothing: 0.1 }
    }

    /// No mixing, only label smoothing `s` (0: plain cross-entropy).
    pub fn smoothing_only(s: f64) -> Self {
        Self { mixup_alpha: 0.0, cutmix_alpha: 0.0, prob: 0.0, switch_prob: 0.0, label_smoothing: s }
    }

    /// Whether any batch can be mixed.
    pub fn mixes(&self) -> bool {
        self.prob > 0.0 && (self.mixup_alpha > 0.0 || self.cutmix_alpha > 0.0)
    }

    /// An error naming the field when a value is out of range.
    pub fn check(&self) -> crate::Result<()> {
        let bad = |what: &str, v: f64| crate::Error::Config(format!("{what} must be in [0, 1], got {v}"));
        for (what, v) in [("mixup prob", self.prob), ("switch prob", self.switch_prob)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(bad(what, v));
            }
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(crate::Error::Config(format!(
                "label smoothing must be in [0, 1), got {}",
                self.label_smoothing
            )));
        }
        for (what, v) in [("mixup alpha", self.mixup_alpha), ("cutmix alpha", self.cutmix_alpha)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(crate::Error::Config(format!("{what} must be ≥ 0, got {v}")));
            }
        }
        Ok(())
    }

    /// Draws how to mix one batch of `height × width` inputs.
    pub fn sample(&self, height: i64, width: i64, rng: &mut impl Rng) -> Mix {
        if !self.mixes() || rng.gen::<f64>() >= self.prob {
            return Mix::None;
        }
        let cutmix = match (self.mixup_alpha > 0.0, self.cutmix_alpha > 0.0) {
            (true, true) => rng.gen::<f64>() < self.switch_prob,
            (m, _) => !m,
        };
        let alpha = if cutmix { self.cutmix_alpha } else { self.mixup_alpha };
        let lam = Beta::new(alpha, alpha).map(|b| b.sample(rng)).unwrap_or(1.0);
        if cutmix {
            let cy = rng.gen_range(0..height.max(1));
            let cx = rng.gen_range(0..width.max(1));
            Mix::cut_at(lam, height, width, cy, cx)
        } else {
            Mix::Blend { lam }
        }
    }
}

/// How one batch is mixed with itself reversed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mix {
    /// Not mixed.
    None,
    /// `λ x + (1 - λ) x.flip(0)`.
    Blend {
        /// The weight of the batch itself.
        lam: f64,
    },
    /// Rows `top..bottom` and columns `left..right` taken from the
    /// reversed batch; `lam` is the share of the image left untouched.
    Cut {
        /// 1 - the box's area / the image's area.
        lam: f64,
        /// First row of the box.
        top: i64,
        /// One past its last row.
        bottom: i64,
        /// First column.
        left: i64,
        /// One past its last column.
        right: i64,
    },
}

impl Mix {
    /// CutMix's box for `λ` centred at row `cy`, column `cx` (timm 1.0.31's
    /// `rand_bbox`: sides `⌊h·√(1-λ)⌋` and `⌊w·√(1-λ)⌋`, the odd pixel
    /// after the centre, clipped to the image), with λ corrected to the
    /// clipped area.
    pub fn cut_at(lam: f64, height: i64, width: i64, cy: i64, cx: i64) -> Mix {
        let ratio = (1.0 - lam).max(0.0).sqrt();
        let (ch, cw) = ((height as f64 * ratio) as i64, (width as f64 * ratio) as i64);
        let top = (cy - ch / 2).clamp(0, height);
        let bottom = (cy + (ch + 1) / 2).clamp(0, height);
        let left = (cx - cw / 2).clamp(0, width);
        let right = (cx + (cw + 1) / 2).clamp(0, width);
        let area = ((bottom - top) * (right - left)) as f64;
        Mix::Cut { lam: 1.0 - area / (height * width).max(1) as f64, top, bottom, left, right }
    }

    /// The weight of each sample's own label.
    pub fn lam(&self) -> f64 {
        match *self {
            Mix::None => 1.0,
            Mix::Blend { lam } | Mix::Cut { lam, .. } => lam,
        }
    }

    /// The mixed inputs and soft targets for `x` (`[B, C, H, W]`, or any
    /// `[B, …]` for [`Mix::None`] and [`Mix::Blend`]) with labels `y`
    /// (`[B]`, int64) of `classes` classes, smoothed by `smoothing`.
    ///
    /// # Shapes
    /// `[B, …]`, `[B]` → `[B, …]`, `[B, classes]`
    pub fn apply(&self, x: &Tensor, y: &Tensor, classes: i64, smoothing: f64) -> (Tensor, Tensor) {
        let lam = self.lam();
        let one = smooth_one_hot(y, classes, smoothing, x.device());
        let targets = if lam == 1.0 { one } else { &one * lam + one.flip([0]) * (1.0 - lam) };
        let mixed = match *self {
            Mix::None => x.shallow_clone(),
            Mix::Blend { lam } => x * lam + x.flip([0]) * (1.0 - lam),
            Mix::Cut { top, bottom, left, right, .. } => {
                let out = x.copy();
                let (h, w) = (bottom - top, right - left);
                if h > 0 && w > 0 {
                    let src = x.flip([0]).narrow(2, top, h).narrow(3, left, w);
                    out.narrow(2, top, h).narrow(3, left, w).copy_(&src);
                }
                out
            }
        };
        (mixed, targets)
    }
}

/// One-hot labels smoothed by `s`: `1 - s + s/C` on the class, `s/C`
/// elsewhere (timm's `mixup_target` before mixing; the targets of
/// PyTorch's `cross_entropy(label_smoothing=s)`).
///
/// # Shapes
/// `[B]` → `[B, classes]`
pub fn smooth_one_hot(y: &Tensor, classes: i64, s: f64, device: tch::Device) -> Tensor {
    let off = s / classes as f64;
    let on = 1.0 - s + off;
    let y = y.to_device(device).to_kind(Kind::Int64).view([-1, 1]);
    Tensor::full([y.size()[0], classes], off, (Kind::Float, device)).scatter_value(1, &y, on)
}

/// Cross-entropy against soft targets, averaged over the batch, in f32
/// (timm's `SoftTargetCrossEntropy`).
///
/// # Shapes
/// `[B, C]`, `[B, C]` → `[]`
pub fn soft_cross_entropy(logits: &Tensor, targets: &Tensor) -> Tensor {
    let logp = logits.to_kind(Kind::Float).log_softmax(-1, Kind::Float);
    (-(targets * logp).sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)).mean(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use tch::Device;

    #[test]
    fn smoothing_alone_is_pytorchs_label_smoothing() {
        let logits = Tensor::randn([6, 5], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 4, 2, 2, 1, 3]);
        let ours = soft_cross_entropy(&logits, &smooth_one_hot(&y, 5, 0.1, Device::Cpu));
        let torch = logits.cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Mean, -100, 0.1);
        assert!((ours - torch).abs().double_value(&[]) < 1e-6);
    }

    #[test]
    fn sampled_mixes_follow_the_config() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let cfg = MixupConfig::mae();
        let (mut cuts, mut blends, mut lam_sum) = (0, 0, 0.0);
        for _ in 0..2000 {
            match cfg.sample(28, 28, &mut rng) {
                Mix::Cut { lam, top, bottom, left, right } => {
                    cuts += 1;
                    assert!((0..=28).contains(&top) && top <= bottom && bottom <= 28);
                    assert!(left <= right && right <= 28);
                    let area = ((bottom - top) * (right - left)) as f64 / 784.0;
                    assert!((lam - (1.0 - area)).abs() < 1e-12);
                }
                Mix::Blend { lam } => {
                    blends += 1;
                    lam_sum += lam;
                }
                Mix::None => panic!("prob 1 always mixes"),
            }
        }
        // switch_prob 0.5; Beta(0.8, 0.8) has mean 0.5.
        assert!((800..1200).contains(&cuts), "{cuts} cuts");
        assert!((lam_sum / blends as f64 - 0.5).abs() < 0.05);
        assert_eq!(MixupConfig::smoothing_only(0.1).sample(28, 28, &mut rng), Mix::None);
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let bad = MixupConfig { label_smoothing: 1.0, ..MixupConfig::mae() };
        assert!(bad.check().unwrap_err().to_string().contains("label smoothing"));
        let bad = MixupConfig { prob: 1.5, ..MixupConfig::mae() };
        assert!(bad.check().unwrap_err().to_string().contains("mixup prob"));
        let bad = MixupConfig { cutmix_alpha: -1.0, ..MixupConfig::mae() };
        assert!(bad.check().unwrap_err().to_string().contains("cutmix alpha"));
        MixupConfig::mae().check().unwrap();
    }
}

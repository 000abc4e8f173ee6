//! Learning-rate and momentum schedules.
//!
//! Linear warmup then cosine decay (Loshchilov & Hutter, "SGDR",
//! <https://arxiv.org/abs/1608.03983>; Goyal et al. for warmup,
//! <https://arxiv.org/abs/1706.02677>), and BYOL's cosine momentum
//! (<https://arxiv.org/abs/2006.07733>).

use serde::{Deserialize, Serialize};

/// Linear warmup from `base_lr / warmup_steps` to `base_lr`, then cosine
/// decay to `final_lr` at `total_steps`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WarmupCosine {
    /// Peak learning rate.
    pub base_lr: f64,
    /// Learning rate at the last step.
    pub final_lr: f64,
    /// Steps of linear warmup.
    pub warmup_steps: usize,
    /// Total number of steps.
    pub total_steps: usize,
}

impl WarmupCosine {
    /// The learning rate for 0-based `step`.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        self.final_lr + 0.5 * (self.base_lr - self.final_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// The warmup epochs of a run of `epochs`: `requested`, but at most
/// `epochs - 1`, so that at least one epoch decays (a run of one epoch has
/// none). The rule of all three `train-*` binaries.
pub fn warmup_epochs(requested: usize, epochs: usize) -> usize {
    requested.min(epochs.saturating_sub(1))
}

/// BYOL's momentum: `1 - (1 - base) * (cos(pi * step / total) + 1) / 2`,
/// rising from `base` to 1.
pub fn cosine_momentum(base: f64, step: usize, total: usize) -> f64 {
    let progress = (step as f64 / total.max(1) as f64).min(1.0);
    1.0 - (1.0 - base) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_leaves_at_least_one_epoch_to_decay() {
        assert_eq!(warmup_epochs(2, 15), 2);
        assert_eq!(warmup_epochs(10, 3), 2);
        assert_eq!(warmup_epochs(2, 1), 0);
        assert_eq!(warmup_epochs(0, 0), 0);
    }

    #[test]
    fn warmup_then_cosine() {
        let s = WarmupCosine { base_lr: 1.0, final_lr: 0.0, warmup_steps: 10, total_steps: 110 };
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(60) - 0.5).abs() < 1e-12);
        assert!(s.lr(109) < 1e-3);
        assert!((0..110).skip(10).all(|i| s.lr(i + 1) <= s.lr(i)));
    }

    #[test]
    fn momentum_rises_to_one() {
        assert!((cosine_momentum(0.99, 0, 100) - 0.99).abs() < 1e-12);
        assert!((cosine_momentum(0.99, 50, 100) - 0.995).abs() < 1e-12);
        assert!((cosine_momentum(0.99, 100, 100) - 1.0).abs() < 1e-12);
    }
}

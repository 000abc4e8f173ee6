//! Barlow Twins (Zbontar et al., <https://arxiv.org/abs/2103.03230>) and
//! VICReg (Bardes et al., <https://arxiv.org/abs/2105.04906>): one encoder
//! with a 3-layer expander; the loss makes the two views' embeddings agree
//! while keeping their dimensions decorrelated (and, for VICReg, spread).
//! Each view goes through the networks on its own, so BatchNorm statistics
//! are per view, as in the papers. With several ranks, the loss's
//! statistics (cross-correlation, variance, covariance) are those of the
//! global batch.

use crate::backbone::BackboneConfig;
use crate::branch::Branch;
use serde::{Deserialize, Serialize};
use ssl_core::losses::{barlow_twins_global, vicreg_terms_global};
use ssl_core::method::{Batch, Method, Output};
use ssl_core::modules::MlpHeadConfig;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Configuration of either method.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RedundancyConfig {
    /// The backbone.
    pub backbone: BackboneConfig,
    /// Expander width (8192 in both papers).
    pub width: i64,
    /// Barlow Twins' λ (5e-3), or VICReg's invariance weight (25).
    pub lambda: f64,
    /// VICReg's variance weight (25); unused by Barlow Twins.
    pub mu: f64,
    /// VICReg's covariance weight (1); unused by Barlow Twins.
    pub nu: f64,
}

impl RedundancyConfig {
    /// Barlow Twins with λ = 5e-3 and an expander of `width`.
    pub fn barlow_twins(backbone: BackboneConfig, width: i64) -> Self {
        Self { backbone, width, lambda: 5e-3, mu: 0.0, nu: 0.0 }
    }
    /// VICReg with (25, 25, 1) and an expander of `width`.
    pub fn vicreg(backbone: BackboneConfig, width: i64) -> Self {
        Self { backbone, width, lambda: 25.0, mu: 25.0, nu: 1.0 }
    }
}

/// Which loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    BarlowTwins,
    VicReg,
}

/// Barlow Twins or VICReg; see the module docs. Variables: `online.*`.
pub struct Redundancy {
    online: Branch,
    cfg: RedundancyConfig,
    kind: Kind,
}

impl Redundancy {
    /// Barlow Twins under `p`.
    pub fn barlow_twins(p: &nn::Path, cfg: &RedundancyConfig) -> Self {
        Self::new(p, cfg, Kind::BarlowTwins)
    }
    /// VICReg under `p`.
    pub fn vicreg(p: &nn::Path, cfg: &RedundancyConfig) -> Self {
        Self::new(p, cfg, Kind::VicReg)
    }
    fn new(p: &nn::Path, cfg: &RedundancyConfig, kind: Kind) -> Self {
        let online =
            Branch::new(&(p / "online"), &cfg.backbone, |f| MlpHeadConfig::expander(f, cfg.width, cfg.width));
        Self { online, cfg: cfg.clone(), kind }
    }
}

impl Method for Redundancy {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::BarlowTwins => "barlow-twins",
            Kind::VicReg => "vicreg",
        }
    }

    fn loss(&self, batch: &Batch, train: bool) -> ssl_core::Result<Output> {
        let (h0, z0) = self.online.forward_both(&batch.views[0], train);
        let z1 = self.online.forward_t(&batch.views[1], train);
        let world = ssl_dist::world();
        let out = match self.kind {
            Kind::BarlowTwins => Output::new(barlow_twins_global(&z0, &z1, self.cfg.lambda, world)?),
            Kind::VicReg => {
                let t = vicreg_terms_global(&z0, &z1, 1e-4, world)?;
                let metrics = vec![
                    ("invariance", t.invariance.detach()),
                    ("variance", t.variance.detach()),
                    ("covariance", t.covariance.detach()),
                ];
                let loss =
                    t.invariance * self.cfg.lambda + t.variance * self.cfg.mu + t.covariance * self.cfg.nu;
                Output::new(loss).with_metrics(metrics)
            }
        };
        Ok(out.with_features(h0))
    }

    fn features(&self, x: &Tensor) -> Tensor {
        self.online.backbone.forward_t(x, false)
    }
}

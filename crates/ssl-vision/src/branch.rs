//! A backbone with a projection head, and a momentum (EMA) copy of one:
//! the building blocks shared by the two-view methods.

use crate::backbone::{Backbone, BackboneConfig};
use ssl_core::ema::Ema;
use ssl_core::modules::{MlpHead, MlpHeadConfig};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Backbone and projection head under one path: `PREFIX.backbone.*`
/// (torchvision names below) and `PREFIX.projector.layers.*`.
pub struct Branch {
    /// The encoder that is evaluated.
    pub backbone: Backbone,
    /// The projection head.
    pub projector: MlpHead,
}

impl Branch {
    /// Builds a branch under `p`; `head` maps the backbone's width to a
    /// head config.
    pub fn new(p: &nn::Path, backbone: &BackboneConfig, head: impl Fn(i64) -> MlpHeadConfig) -> Self {
        let backbone = Backbone::new(&(p / "backbone"), backbone);
        let projector = MlpHead::new(&(p / "projector"), &head(backbone.feature_dim()));
        Self { backbone, projector }
    }

    /// The projection of a batch.
    ///
    /// # Shapes
    /// `[B, C, H, W]` → `[B, D]`
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_both(x, train).1
    }

    /// Backbone features and their projection.
    ///
    /// # Shapes
    /// `[B, C, H, W]` → `([B, F], [B, D])`
    pub fn forward_both(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let h = self.backbone.forward_t(x, train);
        let z = self.projector.forward_t(&h, train);
        (h, z)
    }

    /// Features and projection computed on `splits` sub-batches separately, so that
    /// BatchNorm statistics come from each sub-batch alone. On one device
    /// this stands in for MoCo's shuffle-BN, as the `SplitBatchNorm` of the
    /// MoCo authors' CIFAR demo does.
    pub fn forward_split(&self, x: &Tensor, train: bool, splits: i64) -> (Tensor, Tensor) {
        let b = x.size()[0];
        if splits <= 1 || b % splits != 0 {
            return self.forward_both(x, train);
        }
        let (hs, zs): (Vec<Tensor>, Vec<Tensor>) =
            x.chunk(splits, 0).iter().map(|c| self.forward_both(c, train)).unzip();
        (Tensor::cat(&hs, 0), Tensor::cat(&zs, 0))
    }
}

/// A momentum copy of a branch: built under `target`, never trained
/// (`requires_grad` off), and moved towards the online branch by [`Ema`].
pub struct Target {
    /// The momentum branch.
    pub branch: Branch,
    ema: Ema,
}

impl Target {
    /// Builds the target branch under `vs.root() / "target"` as a copy of
    /// the online variables under `online_prefix` (e.g. `"online"`).
    pub fn new(
        vs: &nn::VarStore,
        online_prefix: &str,
        backbone: &BackboneConfig,
        head: impl Fn(i64) -> MlpHeadConfig,
    ) -> ssl_core::Result<Self> {
        let branch = Branch::new(&(vs.root() / "target"), backbone, head);
        let vars = vs.variables();
        let target: Vec<(String, Tensor)> = vars
            .iter()
            .filter_map(|(n, t)| n.strip_prefix("target.").map(|rest| (rest.to_string(), t.shallow_clone())))
            .collect();
        for (_, t) in &target {
            let _ = t.shallow_clone().set_requires_grad(false);
        }
        let online: Vec<(String, Tensor)> = vars
            .iter()
            .filter_map(|(n, t)| {
                n.strip_prefix(online_prefix)
                    .and_then(|r| r.strip_prefix('.'))
                    .map(|rest| (rest.to_string(), t.shallow_clone()))
            })
            .collect();
        let ema = Ema::new(&online, &target)?;
        Ok(Self { branch, ema })
    }

    /// `target = tau * target + (1 - tau) * online`.
    pub fn update(&self, tau: f64) {
        self.ema.update(tau);
    }
}

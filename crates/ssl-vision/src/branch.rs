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
        let ema = Ema::between(vs, &format!("{online_prefix}."), "target.")?;
        Ok(Self { branch, ema })
    }

    /// `target = tau * target + (1 - tau) * online`.
    pub fn update(&self, tau: f64) {
        self.ema.update(tau);
    }
}

/// An online branch with a predictor, and a momentum target of the
/// branch: the networks BYOL and MoCo v3 share. Variables: `online.*`,
/// `predictor.*`, `target.*` (not trained).
pub struct Bootstrap {
    /// The trained branch.
    pub online: Branch,
    /// The predictor on the online projections.
    pub predictor: MlpHead,
    /// The momentum copy of `online`.
    pub target: Target,
}

/// What [`Bootstrap::forward`] computes for two views.
pub struct BootstrapViews {
    /// Backbone features of the first view.
    pub features0: Tensor,
    /// Predictions of each view (online branch, then predictor).
    pub predictions: [Tensor; 2],
    /// Target projections of each view (no gradient).
    pub targets: [Tensor; 2],
}

impl Bootstrap {
    /// Builds the three networks in `vs`; the target starts as a copy of the
    /// online branch.
    pub fn new(
        vs: &nn::VarStore,
        backbone: &BackboneConfig,
        head: impl Fn(i64) -> MlpHeadConfig + Copy,
        predictor: &MlpHeadConfig,
    ) -> ssl_core::Result<Self> {
        let online = Branch::new(&(vs.root() / "online"), backbone, head);
        let predictor = MlpHead::new(&(vs.root() / "predictor"), predictor);
        let target = Target::new(vs, "online", backbone, head)?;
        Ok(Self { online, predictor, target })
    }

    /// Both views through the online branch and predictor, and through the
    /// target without gradient.
    pub fn forward(&self, v0: &Tensor, v1: &Tensor, train: bool) -> BootstrapViews {
        let (h0, z0) = self.online.forward_both(v0, train);
        let p0 = self.predictor.forward_t(&z0, train);
        let p1 = self.predictor.forward_t(&self.online.forward_t(v1, train), train);
        let targets = tch::no_grad(|| {
            [self.target.branch.forward_t(v0, train), self.target.branch.forward_t(v1, train)]
        });
        BootstrapViews { features0: h0, predictions: [p0, p1], targets }
    }
}

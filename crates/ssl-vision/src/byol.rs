//! BYOL (Grill et al., "Bootstrap Your Own Latent", <https://arxiv.org/abs/2006.07733>)
//! and SimSiam (Chen & He, "Exploring Simple Siamese Representation
//! Learning", <https://arxiv.org/abs/2011.10566>): an online branch with a
//! predictor regresses the other view's projection, which is held fixed
//! (stop-gradient); BYOL takes it from a momentum target, SimSiam from the
//! online branch itself. Symmetric negative cosine loss, as lightly's
//! examples.

use crate::backbone::BackboneConfig;
use crate::branch::{Bootstrap, Branch};
use serde::{Deserialize, Serialize};
use ssl_core::losses::negative_cosine;
use ssl_core::method::{Batch, Method, Output};
use ssl_core::modules::{MlpHead, MlpHeadConfig};
use ssl_core::schedule::cosine_momentum;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// BYOL's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ByolConfig {
    /// The backbone.
    pub backbone: BackboneConfig,
    /// Projector and predictor hidden width (4096 in the paper).
    pub hidden: i64,
    /// Projection width (256 in the paper).
    pub out: i64,
    /// Starting target momentum; rises to 1 with a cosine schedule.
    pub base_momentum: f64,
}

impl ByolConfig {
    /// The paper's heads on `backbone`, with base momentum 0.99.
    pub fn new(backbone: BackboneConfig) -> Self {
        Self { backbone, hidden: 4096, out: 256, base_momentum: 0.99 }
    }
}

/// BYOL; see the module docs. Variables: `online.*`, `predictor.*`,
/// `target.*` (not trained).
pub struct Byol {
    nets: Bootstrap,
    base_momentum: f64,
}

impl Byol {
    /// Builds the networks in `vs`; the target starts as a copy of the
    /// online branch.
    pub fn new(vs: &nn::VarStore, cfg: &ByolConfig) -> ssl_core::Result<Self> {
        let head = |f| MlpHeadConfig::simclr(f, cfg.hidden, cfg.out);
        let nets =
            Bootstrap::new(vs, &cfg.backbone, head, &MlpHeadConfig::simclr(cfg.out, cfg.hidden, cfg.out))?;
        Ok(Self { nets, base_momentum: cfg.base_momentum })
    }
}

impl Method for Byol {
    fn name(&self) -> &'static str {
        "byol"
    }

    /// Each rank's mean; DDP's average over the ranks makes it the global one.
    fn loss(&self, batch: &Batch, train: bool) -> ssl_core::Result<Output> {
        let v = self.nets.forward(&batch.views[0], &batch.views[1], train);
        let ([p0, p1], [t0, t1]) = (&v.predictions, &v.targets);
        let loss = (negative_cosine(p0, t1) + negative_cosine(p1, t0)) * 0.5;
        Ok(Output::new(loss).with_features(v.features0))
    }

    fn after_step(&mut self, step: usize, total_steps: usize) {
        self.nets.target.update(cosine_momentum(self.base_momentum, step, total_steps));
    }

    fn features(&self, x: &Tensor) -> Tensor {
        self.nets.online.backbone.forward_t(x, false)
    }
}

/// SimSiam's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimSiamConfig {
    /// The backbone.
    pub backbone: BackboneConfig,
    /// Projection width (2048 in the paper; also the projector's hidden width).
    pub out: i64,
    /// Predictor bottleneck (512 in the paper).
    pub pred_hidden: i64,
}

impl SimSiamConfig {
    /// The paper's heads on `backbone`.
    pub fn new(backbone: BackboneConfig) -> Self {
        Self { backbone, out: 2048, pred_hidden: 512 }
    }
}

/// SimSiam; see the module docs. Variables: `online.*`, `predictor.*`.
pub struct SimSiam {
    online: Branch,
    predictor: MlpHead,
}

impl SimSiam {
    /// Builds the networks under `p`.
    pub fn new(p: &nn::Path, cfg: &SimSiamConfig) -> Self {
        let online = Branch::new(&(p / "online"), &cfg.backbone, |f| {
            MlpHeadConfig::simsiam_projection(f, cfg.out, cfg.out)
        });
        let predictor =
            MlpHead::new(&(p / "predictor"), &MlpHeadConfig::simclr(cfg.out, cfg.pred_hidden, cfg.out));
        Self { online, predictor }
    }
}

impl Method for SimSiam {
    fn name(&self) -> &'static str {
        "simsiam"
    }

    /// Each rank's mean; DDP's average over the ranks makes it the global one.
    fn loss(&self, batch: &Batch, train: bool) -> ssl_core::Result<Output> {
        let (h0, z0) = self.online.forward_both(&batch.views[0], train);
        let z1 = self.online.forward_t(&batch.views[1], train);
        let (p0, p1) = (self.predictor.forward_t(&z0, train), self.predictor.forward_t(&z1, train));
        let loss = (negative_cosine(&p0, &z1.detach()) + negative_cosine(&p1, &z0.detach())) * 0.5;
        // Collapse monitor: the per-dimension std of the normalised outputs
        // is about 1/sqrt(D) when healthy and 0 when collapsed.
        let std = tch::no_grad(|| {
            ssl_core::losses::l2_normalize(&z0).std_dim([0i64].as_slice(), true, false).mean(tch::Kind::Float)
        });
        Ok(Output::new(loss).with_metrics(vec![("output_std", std)]).with_features(h0))
    }

    fn features(&self, x: &Tensor) -> Tensor {
        self.online.backbone.forward_t(x, false)
    }
}

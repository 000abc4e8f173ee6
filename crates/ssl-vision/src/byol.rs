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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resnet::ResNetConfig;
    use tch::{Device, Kind};

    /// SimSiam's stop-gradient: the method's gradients equal those of
    /// `½ (D(p0, sg(z1)) + D(p1, sg(z0)))` written out here (f64, to
    /// 1e-12), and differ from those of the same loss without the
    /// stop-gradient, which a method that forgot it would give.
    #[test]
    fn simsiam_stops_the_gradient_at_the_other_views_projection() {
        tch::manual_seed(7);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let backbone = ResNetConfig::resnet18_cifar().with_width(4).with_in_channels(1).into();
        let m = SimSiam::new(
            &vs.root(),
            &SimSiamConfig { out: 16, pred_hidden: 8, ..SimSiamConfig::new(backbone) },
        );
        vs.double();
        let x = Tensor::randn([6, 1, 12, 12], (Kind::Double, Device::Cpu));
        let y = (x.flip([3]) * 0.8 + 0.1).contiguous();
        let vars: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        let grads = |loss: Tensor| -> Vec<Tensor> {
            for (_, t) in &vars {
                let mut g = t.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
            loss.backward();
            vars.iter().map(|(_, t)| t.grad().copy()).collect()
        };
        let batch = Batch { views: vec![x.shallow_clone(), y.shallow_clone()], labels: None };
        let method = grads(m.loss(&batch, false).unwrap().loss);
        let by_hand = |stop: bool| {
            let (z0, z1) = (m.online.forward_t(&x, false), m.online.forward_t(&y, false));
            let (p0, p1) = (m.predictor.forward_t(&z0, false), m.predictor.forward_t(&z1, false));
            let sg = |z: &Tensor| if stop { z.detach() } else { z.shallow_clone() };
            let d = |p: &Tensor, z: &Tensor| {
                -(ssl_core::losses::l2_normalize(p) * ssl_core::losses::l2_normalize(z))
                    .sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
                    .mean(Kind::Double)
            };
            grads((d(&p0, &sg(&z1)) + d(&p1, &sg(&z0))) * 0.5)
        };
        let diff = |a: &[Tensor], b: &[Tensor]| {
            a.iter().zip(b).map(|(a, b)| (a - b).abs().max().double_value(&[])).fold(0.0, f64::max)
        };
        let same = diff(&method, &by_hand(true));
        assert!(same < 1e-12, "the method's gradients differ from the stop-gradient formula's by {same}");
        let without = diff(&method, &by_hand(false));
        assert!(without > 1e-6, "without the stop-gradient the gradients are the same ({without})");
    }
}

//! MoCo v2 and v3.
//!
//! MoCo v2 (He et al., "Momentum Contrast for Unsupervised Visual
//! Representation Learning", <https://arxiv.org/abs/1911.05722>; Chen et al.,
//! "Improved Baselines with Momentum Contrastive Learning",
//! <https://arxiv.org/abs/2003.04297>): queries from the online encoder,
//! keys from a momentum encoder, InfoNCE against a queue of past keys.
//!
//! BatchNorm must not leak which key matches which query. On one device
//! the encoders normalise `bn_splits` sub-batches separately (the
//! `SplitBatchNorm` of the MoCo authors' CIFAR demo). With several ranks
//! the key encoder uses the paper's shuffle-BN: the key views of every rank
//! are gathered, permuted (rank 0's permutation), normalised in their
//! shuffled sub-batches and put back in order; each rank's queries use its
//! own sub-batches, `bn_splits / world_size` of them. The keys of every rank
//! are gathered before they are enqueued, so every rank holds the same
//! queue, the one a single process on the global batch would hold. The
//! queue and its pointer are variables of the `VarStore`, so checkpoints
//! carry them and `--resume` continues with the same queue.
//!
//! MoCo v3 (Chen, Xie & He, "An Empirical Study of Training Self-Supervised
//! Vision Transformers", <https://arxiv.org/abs/2104.02057>): no queue; a
//! predictor on the query branch, a momentum key encoder with a cosine
//! momentum schedule, and a symmetric in-batch InfoNCE loss.

use crate::backbone::BackboneConfig;
use crate::branch::{Bootstrap, Branch, Target};
use serde::{Deserialize, Serialize};
use ssl_core::losses::{info_nce_in_batch_global, info_nce_queue, l2_normalize};
use ssl_core::method::{Batch, Method, Output};
use ssl_core::modules::MlpHeadConfig;
use ssl_core::schedule::cosine_momentum;
use std::cell::RefCell;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// MoCo v2's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MocoV2Config {
    /// The backbone.
    pub backbone: BackboneConfig,
    /// Head hidden width (2048).
    pub hidden: i64,
    /// Key width (128).
    pub out: i64,
    /// InfoNCE temperature (0.2).
    pub temperature: f64,
    /// Negatives in the queue (65536 on ImageNet; 4096 for small sets).
    pub queue_size: i64,
    /// Key-encoder momentum (0.999 on ImageNet; 0.99 for short runs).
    pub momentum: f64,
    /// BatchNorm sub-batches of the global batch (split BatchNorm; with
    /// several ranks, each rank's share is `bn_splits / world_size`).
    pub bn_splits: i64,
    /// Shuffle the key views before their split BatchNorm in one process
    /// too (always on with several ranks); a one-process run with it and
    /// `bn_splits = W` computes exactly what `W` ranks do.
    #[serde(default)]
    pub shuffle_bn: bool,
}

impl MocoV2Config {
    /// Small-data defaults: queue 4096, momentum 0.99, 8 BN splits.
    pub fn new(backbone: BackboneConfig) -> Self {
        Self {
            backbone,
            hidden: 2048,
            out: 128,
            temperature: 0.2,
            queue_size: 4096,
            momentum: 0.99,
            bn_splits: 8,
            shuffle_bn: false,
        }
    }
}

/// MoCo v2; see the module docs. Variables: `online.*`, `target.*`,
/// `queue` `[K, D]`, `queue_ptr` `[1]`.
pub struct MocoV2 {
    online: Branch,
    target: Target,
    queue: Tensor,
    queue_ptr: Tensor,
    cfg: MocoV2Config,
    /// Keys of the last training batch, enqueued after the step.
    pending: RefCell<Option<Tensor>>,
}

impl MocoV2 {
    /// Builds the encoders and a random, normalised queue in `vs`.
    pub fn new(vs: &nn::VarStore, cfg: &MocoV2Config) -> ssl_core::Result<Self> {
        if cfg.queue_size < 1 || cfg.temperature.is_nan() || cfg.temperature <= 0.0 {
            return Err(ssl_core::Error::Config(format!(
                "moco-v2 needs a queue of at least 1 key and a temperature above 0, not {} and {}",
                cfg.queue_size, cfg.temperature
            )));
        }
        let head = |f| MlpHeadConfig::moco_v2(f, cfg.hidden, cfg.out);
        let online = Branch::new(&(vs.root() / "online"), &cfg.backbone, head);
        let target = Target::new(vs, "online", &cfg.backbone, head)?;
        let init = l2_normalize(&Tensor::randn([cfg.queue_size, cfg.out], (Kind::Float, vs.device())));
        let queue = vs.root().add("queue", init, false);
        let queue_ptr = vs.root().add("queue_ptr", Tensor::zeros([1], (Kind::Int64, vs.device())), false);
        Ok(Self { online, target, queue, queue_ptr, cfg: cfg.clone(), pending: RefCell::new(None) })
    }

    /// The queue of negatives, `[K, D]`.
    pub fn queue(&self) -> &Tensor {
        &self.queue
    }

    /// The normalised keys of this rank's samples, and of every rank's (in
    /// rank order, for the queue): with shuffle-BN when training on several
    /// ranks or with `shuffle_bn` (see the module docs).
    fn keys(&self, x: &Tensor, train: bool, splits: i64) -> ssl_core::Result<(Tensor, Tensor)> {
        let world = ssl_dist::world();
        let key = |x: &Tensor| l2_normalize(&self.target.branch.forward_split(x, train, splits).1);
        if !train {
            let k = key(x);
            return Ok((k.shallow_clone(), k));
        }
        if !(self.cfg.shuffle_bn || world.is_distributed()) {
            let k = key(x);
            let all = world.all_gather(&k)?;
            return Ok((k, all));
        }
        let n = x.size()[0];
        let offset = world.rank() as i64 * n;
        let views = world.all_gather(x)?;
        let perm = Tensor::randperm(views.size()[0], (Kind::Int64, x.device()));
        world.broadcast_(&perm, 0)?;
        let shuffled = world.all_gather(&key(&views.index_select(0, &perm.narrow(0, offset, n))))?;
        let all = shuffled.index_select(0, &perm.argsort(0, false));
        Ok((all.narrow(0, offset, n), all))
    }

    fn enqueue(&self, keys: &Tensor) {
        let k = self.cfg.queue_size;
        let n = keys.size()[0].min(k);
        let ptr = self.queue_ptr.int64_value(&[0]);
        tch::no_grad(|| {
            let idx = (Tensor::arange(n, (Kind::Int64, keys.device())) + ptr).remainder(k);
            let _ = self.queue.shallow_clone().index_copy_(
                0,
                &idx,
                &keys.narrow(0, 0, n).to_kind(self.queue.kind()),
            );
            let _ = self.queue_ptr.shallow_clone().fill_((ptr + n) % k);
        });
    }
}

impl Method for MocoV2 {
    fn name(&self) -> &'static str {
        "moco-v2"
    }

    fn loss(&self, batch: &Batch, train: bool) -> ssl_core::Result<Output> {
        let world = ssl_dist::world();
        let splits = (self.cfg.bn_splits / world.world_size() as i64).max(1);
        let (h, q) = self.online.forward_split(&batch.views[0], train, splits);
        let (k, all_keys) = tch::no_grad(|| self.keys(&batch.views[1], train, splits))?;
        let loss = info_nce_queue(&q, &k, &self.queue.detach(), self.cfg.temperature);
        if train {
            *self.pending.borrow_mut() = Some(all_keys);
        }
        Ok(Output::new(loss).with_features(h))
    }

    fn after_step(&mut self, _step: usize, _total_steps: usize) {
        self.target.update(self.cfg.momentum);
        if let Some(k) = self.pending.borrow_mut().take() {
            self.enqueue(&k);
        }
    }

    fn features(&self, x: &Tensor) -> Tensor {
        self.online.backbone.forward_t(x, false)
    }
}

/// MoCo v3's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MocoV3Config {
    /// The backbone (a ViT in the paper; a ResNet works too).
    pub backbone: BackboneConfig,
    /// Projector and predictor hidden width (4096).
    pub hidden: i64,
    /// Output width (256).
    pub out: i64,
    /// Temperature (0.2).
    pub temperature: f64,
    /// Starting key-encoder momentum, rising to 1 (0.99).
    pub base_momentum: f64,
}

impl MocoV3Config {
    /// The paper's settings on `backbone`.
    pub fn new(backbone: BackboneConfig) -> Self {
        Self { backbone, hidden: 4096, out: 256, temperature: 0.2, base_momentum: 0.99 }
    }
}

/// MoCo v3; see the module docs. Variables: `online.*`, `predictor.*`,
/// `target.*` (not trained).
pub struct MocoV3 {
    nets: Bootstrap,
    cfg: MocoV3Config,
}

impl MocoV3 {
    /// Builds the networks in `vs`: a 3-layer projector and a 2-layer
    /// predictor, both ending in an affine-free BatchNorm.
    pub fn new(vs: &nn::VarStore, cfg: &MocoV3Config) -> ssl_core::Result<Self> {
        let head = |f| MlpHeadConfig::simsiam_projection(f, cfg.hidden, cfg.out);
        let pred = MlpHeadConfig {
            dims: vec![cfg.out, cfg.hidden, cfg.out],
            batch_norm: true,
            last_batch_norm: true,
            activation: Default::default(),
            init_std: None,
        };
        Ok(Self { nets: Bootstrap::new(vs, &cfg.backbone, head, &pred)?, cfg: cfg.clone() })
    }
}

impl Method for MocoV3 {
    fn name(&self) -> &'static str {
        "moco-v3"
    }

    /// The keys of every rank are the negatives.
    fn loss(&self, batch: &Batch, train: bool) -> ssl_core::Result<Output> {
        let v = self.nets.forward(&batch.views[0], &batch.views[1], train);
        let ([q0, q1], [k0, k1]) = (&v.predictions, &v.targets);
        let (t, world) = (self.cfg.temperature, ssl_dist::world());
        let loss = info_nce_in_batch_global(q0, k1, t, world)? + info_nce_in_batch_global(q1, k0, t, world)?;
        Ok(Output::new(loss).with_features(v.features0))
    }

    fn after_step(&mut self, step: usize, total_steps: usize) {
        self.nets.target.update(cosine_momentum(self.cfg.base_momentum, step, total_steps));
    }

    fn features(&self, x: &Tensor) -> Tensor {
        self.nets.online.backbone.forward_t(x, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resnet::ResNetConfig;
    use tch::Device;

    /// The queue's order: after a training step, the rows from the old
    /// pointer on (wrapping at the end) are the step's keys, normalised, in
    /// batch order, computed here from the momentum encoder before its
    /// update; every other row is unchanged.
    #[test]
    fn moco_v2_enqueues_the_steps_keys_in_order_at_the_pointer() {
        tch::manual_seed(8);
        let vs = nn::VarStore::new(Device::Cpu);
        let backbone = ResNetConfig::resnet18_cifar().with_width(4).with_in_channels(1).into();
        let cfg =
            MocoV2Config { queue_size: 12, bn_splits: 1, out: 8, hidden: 16, ..MocoV2Config::new(backbone) };
        let mut m = MocoV2::new(&vs, &cfg).unwrap();
        for step in 0..3 {
            let x = Tensor::randn([5, 1, 12, 12], (Kind::Float, Device::Cpu));
            let y = x.flip([3]);
            let ptr = m.queue_ptr.int64_value(&[0]);
            let before = m.queue.copy();
            let keys = tch::no_grad(|| m.keys(&y, true, 1)).unwrap().0;
            let batch = Batch { views: vec![x, y], labels: None };
            let _ = m.loss(&batch, true).unwrap();
            m.after_step(step, 3);
            assert_eq!(m.queue_ptr.int64_value(&[0]), (ptr + 5) % 12);
            let rows = (Tensor::arange(5, (Kind::Int64, Device::Cpu)) + ptr).remainder(12);
            let got = m.queue.index_select(0, &rows);
            let d = (&got - &keys).abs().max().double_value(&[]);
            assert!(d < 1e-6, "step {step}: the enqueued rows differ from the keys by {d}");
            let mut untouched = Tensor::ones([12], (Kind::Bool, Device::Cpu));
            let _ = untouched.index_fill_(0, &rows, 0);
            assert!(m
                .queue
                .index_select(0, &untouched.nonzero().squeeze_dim(1))
                .equal(&before.index_select(0, &untouched.nonzero().squeeze_dim(1))));
        }
    }
}

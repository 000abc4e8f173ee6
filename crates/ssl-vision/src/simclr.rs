//! SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of
//! Visual Representations", <https://arxiv.org/abs/2002.05709>): two views,
//! a ResNet backbone, a projection MLP and the NT-Xent loss.

use crate::backbone::{Backbone, BackboneConfig};
use crate::resnet::ResNetConfig;
use serde::{Deserialize, Serialize};
use ssl_core::losses::nt_xent_global;
use ssl_core::method::{Batch, Method, Output};
use ssl_core::modules::{MlpHead, MlpHeadConfig};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// SimCLR's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimClrConfig {
    /// The backbone.
    pub backbone: BackboneConfig,
    /// Hidden width of the projection head.
    pub head_hidden: i64,
    /// Output width of the projection head.
    pub head_out: i64,
    /// NT-Xent temperature.
    pub temperature: f64,
}

impl SimClrConfig {
    /// ResNet-18 (CIFAR stem) with a 2048-128 head, temperature 0.5
    /// (the paper's CIFAR-10 setting).
    pub fn resnet18_cifar(in_channels: i64) -> Self {
        Self {
            backbone: ResNetConfig::resnet18_cifar().with_in_channels(in_channels).into(),
            head_hidden: 2048,
            head_out: 128,
            temperature: 0.5,
        }
    }
    /// A ResNet-18 layout at a quarter of the width (16 channels in the
    /// first stage, 128 features) with a 512-128 head: sized so the bundled
    /// MNIST-5k run trains in minutes on two CPU cores.
    pub fn small(in_channels: i64) -> Self {
        Self {
            backbone: ResNetConfig::resnet18_cifar().with_width(16).with_in_channels(in_channels).into(),
            head_hidden: 512,
            head_out: 128,
            temperature: 0.5,
        }
    }
}

/// SimCLR: backbone and projection head.
pub struct SimClr {
    backbone: Backbone,
    head: MlpHead,
    temperature: f64,
}

impl SimClr {
    /// Builds the networks under `p`: `p/backbone/...` (torchvision names
    /// below it) and `p/head/...`.
    pub fn new(p: &nn::Path, cfg: &SimClrConfig) -> Self {
        let backbone = Backbone::new(&(p / "backbone"), &cfg.backbone);
        let head = MlpHead::new(
            &(p / "head"),
            &MlpHeadConfig::simclr(backbone.feature_dim(), cfg.head_hidden, cfg.head_out),
        );
        Self { backbone, head, temperature: cfg.temperature }
    }

    /// The backbone alone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }
}

impl Method for SimClr {
    fn name(&self) -> &'static str {
        "simclr"
    }

    /// Both views go through the networks as one batch, so BatchNorm sees
    /// statistics of both (as SimCLR's global BN on one device; over every
    /// rank with `--sync-bn`). The negatives come from every rank.
    fn loss(&self, batch: &Batch, train: bool) -> ssl_core::Result<Output> {
        let n = batch.views[0].size()[0];
        let x = Tensor::cat(&batch.views[..2], 0);
        let h = self.backbone.forward_t(&x, train);
        let z = self.head.forward_t(&h, train);
        let loss =
            nt_xent_global(&z.narrow(0, 0, n), &z.narrow(0, n, n), self.temperature, ssl_dist::world())?;
        Ok(Output::new(loss).with_features(h.narrow(0, 0, n)))
    }

    fn features(&self, x: &Tensor) -> Tensor {
        self.backbone.forward_t(x, false)
    }
}

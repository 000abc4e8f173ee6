//! A backbone of either family, chosen by configuration, so every method
//! runs on a ResNet or a ViT.

use crate::resnet::{ResNet, ResNetConfig};
use crate::vit::{Vit, VitConfig};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Which backbone, with its shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "kebab-case")]
pub enum BackboneConfig {
    /// A ResNet.
    ResNet(ResNetConfig),
    /// A Vision Transformer.
    Vit(VitConfig),
}

impl BackboneConfig {
    /// Width of the features the backbone returns.
    pub fn feature_dim(&self) -> i64 {
        match self {
            BackboneConfig::ResNet(c) => c.feature_dim(),
            BackboneConfig::Vit(c) => c.dim,
        }
    }
}

impl From<ResNetConfig> for BackboneConfig {
    fn from(c: ResNetConfig) -> Self {
        BackboneConfig::ResNet(c)
    }
}

impl From<VitConfig> for BackboneConfig {
    fn from(c: VitConfig) -> Self {
        BackboneConfig::Vit(c)
    }
}

/// A built backbone.
#[derive(Debug)]
pub enum Backbone {
    /// A ResNet.
    ResNet(ResNet),
    /// A Vision Transformer.
    Vit(Vit),
}

impl Backbone {
    /// Builds the backbone under `p` (torchvision or timm names below it).
    pub fn new(p: &nn::Path, cfg: &BackboneConfig) -> Self {
        match cfg {
            BackboneConfig::ResNet(c) => Backbone::ResNet(ResNet::new(p, c)),
            BackboneConfig::Vit(c) => Backbone::Vit(Vit::new(p, c)),
        }
    }

    /// Width of the features.
    pub fn feature_dim(&self) -> i64 {
        match self {
            Backbone::ResNet(r) => r.feature_dim(),
            Backbone::Vit(v) => v.feature_dim(),
        }
    }
}

impl ModuleT for Backbone {
    /// # Shapes
    /// `[B, C, H, W]` → `[B, feature_dim]`
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Backbone::ResNet(r) => r.forward_t(xs, train),
            Backbone::Vit(v) => v.forward_t(xs, train),
        }
    }
}

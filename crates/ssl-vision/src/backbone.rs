//! A backbone of either family, chosen by configuration, so every method
//! runs on a ResNet or a ViT.

pub use crate::resnet::to_channels_last;
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
            BackboneConfig::Vit(c) => c.feature_dim(),
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

/// Gives every 4-D variable of `vs` (convolution weights) channels-last
/// strides, in place: in-place optimizer updates keep them, and a ResNet
/// whose weights are channels-last converts its input too (cuDNN then runs
/// NHWC kernels).
pub fn channels_last_(vs: &nn::VarStore) {
    for (_, v) in vs.variables() {
        if v.dim() == 4 {
            let mut v = v;
            tch::no_grad(|| v.set_data(&to_channels_last(&v)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resnet::ResNetConfig;
    use tch::{Device, Kind};

    #[test]
    fn channels_last_changes_strides_not_results() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg: BackboneConfig = ResNetConfig::resnet18_cifar().with_width(8).into();
        let net = Backbone::new(&vs.root(), &cfg);
        let x = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
        let want = net.forward_t(&x, false);
        let xl = to_channels_last(&x);
        assert_eq!(xl.stride(), vec![16 * 16 * 3, 1, 16 * 3, 3]);
        assert!(xl.equal(&x));
        channels_last_(&vs);
        assert_eq!(vs.variables()["conv1.weight"].stride()[1], 1);
        let got = net.forward_t(&xl, false);
        assert!((got - want).abs().max().double_value(&[]) < 1e-4);
    }
}

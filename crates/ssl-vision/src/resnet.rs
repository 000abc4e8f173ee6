//! ResNet backbones (He et al., "Deep Residual Learning for Image
//! Recognition", <https://arxiv.org/abs/1512.03385>) with torchvision's
//! parameter names (`conv1`, `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0`,
//! …), so weights move to and from torchvision through safetensors. The
//! classifier (`fc`) is left out: the backbone returns pooled features.
//!
//! The CIFAR stem (a 3×3 stride-1 conv, no max-pool) is the usual choice for
//! 32×32 and smaller images (SimCLR appendix B.9).

use serde::{Deserialize, Serialize};
use ssl_core::modules::BatchNorm;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Residual block type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34).
    Basic,
    /// 1×1, 3×3, 1×1 with 4× expansion (ResNet-50 and up).
    Bottleneck,
}

/// The first layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stem {
    /// 3×3 stride-1 conv, no max-pool (CIFAR, MNIST).
    Cifar,
    /// 7×7 stride-2 conv and a 3×3 stride-2 max-pool (ImageNet).
    ImageNet,
}

/// A ResNet's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Block type.
    pub block: BlockKind,
    /// Blocks per stage.
    pub layers: [usize; 4],
    /// Channels of the first stage (64 in the paper); later stages double.
    pub width: i64,
    /// Stem type.
    pub stem: Stem,
    /// Input channels (1 for grayscale, 3 for RGB).
    pub in_channels: i64,
}

impl ResNetConfig {
    /// ResNet-18 with the ImageNet stem.
    pub fn resnet18() -> Self {
        Self {
            block: BlockKind::Basic,
            layers: [2, 2, 2, 2],
            width: 64,
            stem: Stem::ImageNet,
            in_channels: 3,
        }
    }
    /// ResNet-34 with the ImageNet stem.
    pub fn resnet34() -> Self {
        Self { layers: [3, 4, 6, 3], ..Self::resnet18() }
    }
    /// ResNet-50 with the ImageNet stem.
    pub fn resnet50() -> Self {
        Self { block: BlockKind::Bottleneck, layers: [3, 4, 6, 3], ..Self::resnet18() }
    }
    /// ResNet-18 with the CIFAR stem.
    pub fn resnet18_cifar() -> Self {
        Self { stem: Stem::Cifar, ..Self::resnet18() }
    }
    /// A preset by name: `resnet18`, `resnet34`, `resnet50`, each with
    /// the given stem.
    pub fn by_name(name: &str, stem: Stem) -> Option<Self> {
        let cfg = match name {
            "resnet18" => Self::resnet18(),
            "resnet34" => Self::resnet34(),
            "resnet50" => Self::resnet50(),
            _ => return None,
        };
        Some(Self { stem, ..cfg })
    }
    /// Same network with another first-stage width.
    pub fn with_width(self, width: i64) -> Self {
        Self { width, ..self }
    }
    /// Same network for another number of input channels.
    pub fn with_in_channels(self, in_channels: i64) -> Self {
        Self { in_channels, ..self }
    }
    /// Channels of the pooled output.
    pub fn feature_dim(&self) -> i64 {
        let expansion = if self.block == BlockKind::Bottleneck { 4 } else { 1 };
        self.width * 8 * expansion
    }
}

fn conv(p: nn::Path, i: i64, o: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding,
        bias: false,
        // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
        ws_init: nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanOut,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        ..Default::default()
    };
    nn::conv2d(p, i, o, k, cfg)
}

fn bn(p: nn::Path, c: i64) -> BatchNorm {
    ssl_core::modules::batch_norm2d(p, c, Default::default())
}

#[derive(Debug)]
struct Block {
    convs: Vec<(nn::Conv2D, BatchNorm)>,
    downsample: Option<(nn::Conv2D, BatchNorm)>,
}

impl Block {
    fn new(p: &nn::Path, kind: BlockKind, inp: i64, planes: i64, stride: i64) -> (Self, i64) {
        let (convs, out) = match kind {
            BlockKind::Basic => (
                vec![
                    (conv(p / "conv1", inp, planes, 3, stride, 1), bn(p / "bn1", planes)),
                    (conv(p / "conv2", planes, planes, 3, 1, 1), bn(p / "bn2", planes)),
                ],
                planes,
            ),
            BlockKind::Bottleneck => (
                vec![
                    (conv(p / "conv1", inp, planes, 1, 1, 0), bn(p / "bn1", planes)),
                    (conv(p / "conv2", planes, planes, 3, stride, 1), bn(p / "bn2", planes)),
                    (conv(p / "conv3", planes, planes * 4, 1, 1, 0), bn(p / "bn3", planes * 4)),
                ],
                planes * 4,
            ),
        };
        let downsample = (stride != 1 || inp != out).then(|| {
            let d = p / "downsample";
            (conv(&d / "0", inp, out, 1, stride, 0), bn(&d / "1", out))
        });
        (Self { convs, downsample }, out)
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut y = x.shallow_clone();
        for (i, (c, b)) in self.convs.iter().enumerate() {
            y = y.apply(c).apply_t(b, train);
            if i < last {
                y = y.relu();
            }
        }
        let shortcut = match &self.downsample {
            Some((c, b)) => x.apply(c).apply_t(b, train),
            None => x.shallow_clone(),
        };
        (y + shortcut).relu()
    }
}

/// The same tensor with channels-last strides (`NHWC` in memory, `NCHW`
/// logically), PyTorch's `memory_format=torch.channels_last`, which lets
/// cuDNN pick its NHWC convolution kernels. tch has no memory-format API:
/// the strides are set explicitly (`[H·W·C, 1, W·C, C]`, as PyTorch sets
/// them even where a size-1 dimension makes them ambiguous, such as a 1×1
/// kernel, so that gradients, which autograd makes channels-last, have the
/// parameters' strides, as DDP's Reducer expects). Tensors that are not
/// 4-D are returned as they are.
pub fn to_channels_last(t: &Tensor) -> Tensor {
    let Ok((_, c, h, w)) = t.size4() else {
        return t.shallow_clone();
    };
    let out = Tensor::empty_strided(t.size(), [h * w * c, 1, w * c, c], (t.kind(), t.device()));
    // Differentiable: an input that requires grad keeps its gradient.
    let mut out = out;
    out.copy_(t);
    out
}

/// A ResNet backbone; see the module docs.
#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: BatchNorm,
    stem: Stem,
    stages: Vec<Vec<Block>>,
    feature_dim: i64,
}

impl ResNet {
    /// Builds the backbone under `p`.
    ///
    /// # Panics
    /// If a stage has no block or the width is not positive.
    pub fn new(p: &nn::Path, cfg: &ResNetConfig) -> Self {
        assert!(cfg.layers.iter().all(|&n| n > 0) && cfg.width > 0, "invalid ResNet config {cfg:?}");
        let conv1 = match cfg.stem {
            Stem::Cifar => conv(p / "conv1", cfg.in_channels, cfg.width, 3, 1, 1),
            Stem::ImageNet => conv(p / "conv1", cfg.in_channels, cfg.width, 7, 2, 3),
        };
        let bn1 = bn(p / "bn1", cfg.width);
        let mut inp = cfg.width;
        let mut stages = Vec::new();
        for (s, &n) in cfg.layers.iter().enumerate() {
            let planes = cfg.width << s;
            let sp = p / format!("layer{}", s + 1);
            let mut blocks = Vec::new();
            for b in 0..n {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                let (block, out) = Block::new(&(&sp / b), cfg.block, inp, planes, stride);
                inp = out;
                blocks.push(block);
            }
            stages.push(blocks);
        }
        Self { conv1, bn1, stem: cfg.stem, stages, feature_dim: cfg.feature_dim() }
    }

    /// Channels of the pooled output.
    pub fn feature_dim(&self) -> i64 {
        self.feature_dim
    }

    /// Whether the weights have channels-last strides (see
    /// [`crate::backbone::channels_last_`]); judged on the first block's
    /// first convolution, whose input channels are more than one.
    pub fn is_channels_last(&self) -> bool {
        let w = &self.stages[0][0].convs[0].0.ws;
        w.size()[1] > 1 && w.stride()[1] == 1
    }
}

impl ModuleT for ResNet {
    /// # Shapes
    /// `[N, C, H, W]` → `[N, feature_dim]`
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let xs = if self.is_channels_last() { to_channels_last(xs) } else { xs.shallow_clone() };
        let mut x = xs.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        if self.stem == Stem::ImageNet {
            x = x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        for stage in &self.stages {
            for block in stage {
                x = block.forward_t(&x, train);
            }
        }
        x.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn resnet18_names_and_shapes_match_torchvision() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNet::new(&vs.root(), &ResNetConfig::resnet18());
        let vars = vs.variables();
        // 11.18M parameters without fc (torchvision: 11,689,512 with fc).
        let params: i64 = vars.iter().filter(|(_, t)| t.requires_grad()).map(|(_, t)| t.numel() as i64).sum();
        // torchvision's state dict: 122 entries with fc, so 120 without.
        assert_eq!(vars.len(), 120);
        assert_eq!(params, 11_689_512 - (512 * 1000 + 1000));
        for key in [
            "conv1.weight",
            "bn1.running_var",
            "layer1.1.conv2.weight",
            "layer4.0.downsample.0.weight",
            "layer4.0.downsample.1.bias",
        ] {
            assert!(vars.contains_key(key), "missing {key}");
        }
        assert_eq!(vars["layer3.0.conv1.weight"].size(), [256, 128, 3, 3]);
        let y = net.forward_t(&Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu)), false);
        assert_eq!(y.size(), [2, 512]);
    }

    #[test]
    fn resnet50_has_torchvision_parameter_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = ResNet::new(&vs.root(), &ResNetConfig::resnet50());
        let params: i64 =
            vs.variables().values().filter(|t| t.requires_grad()).map(|t| t.numel() as i64).sum();
        assert_eq!(params, 25_557_032 - (2048 * 1000 + 1000));
    }

    #[test]
    fn cifar_stem_keeps_resolution_for_small_images() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = ResNetConfig::resnet18_cifar().with_width(8).with_in_channels(1);
        let net = ResNet::new(&vs.root(), &cfg);
        let y = net.forward_t(&Tensor::randn([3, 1, 28, 28], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), [3, 64]);
        assert_eq!(net.feature_dim(), 64);
    }
}

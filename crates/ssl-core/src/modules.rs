//! Shared network pieces: MLP projection and prediction heads (SimCLR,
//! MoCo v2/v3, BYOL, SimSiam, Barlow Twins and VICReg all use one).

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// An MLP head: `Linear → [BatchNorm] → ReLU` for every hidden layer, then a
/// final `Linear` (optionally followed by an affine-free BatchNorm, as
/// SimSiam and MoCo v3 do).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MlpHeadConfig {
    /// Input, hidden…, output widths; at least two entries.
    pub dims: Vec<i64>,
    /// BatchNorm after each hidden linear layer.
    pub batch_norm: bool,
    /// BatchNorm (without affine) after the last layer.
    pub last_batch_norm: bool,
}

impl MlpHeadConfig {
    /// SimCLR's 2-layer projection head with BatchNorm (as lightly's
    /// `SimCLRProjectionHead`); also BYOL's projector and predictor.
    pub fn simclr(input: i64, hidden: i64, output: i64) -> Self {
        Self { dims: vec![input, hidden, output], batch_norm: true, last_batch_norm: false }
    }
    /// MoCo v2's head: `Linear → ReLU → Linear`, no BatchNorm.
    pub fn moco_v2(input: i64, hidden: i64, output: i64) -> Self {
        Self { dims: vec![input, hidden, output], batch_norm: false, last_batch_norm: false }
    }
    /// SimSiam's 3-layer projector, BatchNorm everywhere, the last without
    /// affine parameters.
    pub fn simsiam_projection(input: i64, hidden: i64, output: i64) -> Self {
        Self { dims: vec![input, hidden, hidden, output], batch_norm: true, last_batch_norm: true }
    }
    /// Barlow Twins' and VICReg's 3-layer expander (BatchNorm on the hidden
    /// layers only).
    pub fn expander(input: i64, hidden: i64, output: i64) -> Self {
        Self { dims: vec![input, hidden, hidden, output], batch_norm: true, last_batch_norm: false }
    }
}

/// See [`MlpHeadConfig`]. Parameter names follow an `nn.Sequential`:
/// `layers.0.weight`, `layers.1.running_mean`, …
#[derive(Debug)]
pub struct MlpHead {
    layers: Vec<Layer>,
}

#[derive(Debug)]
enum Layer {
    Linear(nn::Linear),
    Bn(nn::BatchNorm),
    Relu,
}

impl MlpHead {
    /// Builds the head under `p`.
    ///
    /// # Panics
    /// If `cfg.dims` has fewer than two entries.
    pub fn new(p: &nn::Path, cfg: &MlpHeadConfig) -> Self {
        assert!(cfg.dims.len() >= 2, "an MLP head needs input and output widths, got {:?}", cfg.dims);
        let p = p / "layers";
        let mut layers = Vec::new();
        let last = cfg.dims.len() - 2;
        for (i, w) in cfg.dims.windows(2).enumerate() {
            let hidden = i < last;
            let bias = !(cfg.batch_norm && hidden);
            let idx = layers.len();
            layers.push(Layer::Linear(nn::linear(
                &p / idx,
                w[0],
                w[1],
                nn::LinearConfig { bias, ..Default::default() },
            )));
            if hidden {
                if cfg.batch_norm {
                    let idx = layers.len();
                    layers.push(Layer::Bn(nn::batch_norm1d(&p / idx, w[1], Default::default())));
                }
                layers.push(Layer::Relu);
            } else if cfg.last_batch_norm {
                let idx = layers.len();
                let bn = nn::BatchNormConfig { affine: false, ..Default::default() };
                layers.push(Layer::Bn(nn::batch_norm1d(&p / idx, w[1], bn)));
            }
        }
        Self { layers }
    }
}

impl ModuleT for MlpHead {
    /// # Shapes
    /// `[N, dims[0]]` → `[N, dims[last]]`
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.layers.iter().fold(xs.shallow_clone(), |x, l| match l {
            Layer::Linear(lin) => x.apply(lin),
            Layer::Bn(bn) => x.apply_t(bn, train),
            Layer::Relu => x.relu(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn names_and_shapes_follow_a_sequential() {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = MlpHead::new(&(vs.root() / "head"), &MlpHeadConfig::simclr(8, 16, 4));
        let names: std::collections::BTreeSet<String> = vs.variables().into_keys().collect();
        assert!(names.contains("head.layers.0.weight"));
        assert!(!names.contains("head.layers.0.bias"));
        assert!(names.contains("head.layers.1.running_var"));
        assert!(names.contains("head.layers.3.bias"));
        let y = head.forward_t(&Tensor::randn([5, 8], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), [5, 4]);
    }
}

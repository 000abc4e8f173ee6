//! COLA (Saeed et al., "Contrastive Learning of General-Purpose Audio
//! Representations", <https://arxiv.org/abs/2010.10915>): two random crops
//! of a clip are positives, the other clips' crops in the batch negatives.
//! Each crop's normalised log-mel (made by [`crate::views`]) goes through
//! the encoder and a projection (Linear → LayerNorm → tanh); the
//! similarity is bilinear, `s(a, p) = aᵀ W p`, and the loss the cross
//! entropy over the batch (ssl-core's).

use crate::encoder::{AudioEncoder, AudioEncoderConfig};
use serde::{Deserialize, Serialize};
use ssl_core::method::{Batch, Method, Output};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

/// COLA's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ColaConfig {
    /// The encoder.
    pub encoder: AudioEncoderConfig,
    /// Projection width (512 in the paper).
    pub projection: i64,
}

/// COLA; see the module docs. Variables: `encoder.*`, `projection.*`,
/// `projection_norm.*`, `bilinear`.
pub struct Cola {
    /// The encoder that is evaluated.
    pub encoder: AudioEncoder,
    projection: nn::Linear,
    norm: nn::LayerNorm,
    bilinear: Tensor,
}

impl Cola {
    /// Builds the networks under `p`.
    pub fn new(p: &nn::Path, cfg: &ColaConfig) -> Self {
        let encoder = AudioEncoder::new(&(p / "encoder"), &cfg.encoder);
        let projection =
            nn::linear(p / "projection", encoder.feature_dim(), cfg.projection, Default::default());
        let norm = nn::layer_norm(p / "projection_norm", vec![cfg.projection], Default::default());
        // The identity plus noise: training starts from a cosine-like
        // similarity of the normalised projections.
        let mut bilinear =
            p.var("bilinear", &[cfg.projection, cfg.projection], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        tch::no_grad(|| {
            let _ = bilinear.g_add_(&Tensor::eye(cfg.projection, (Kind::Float, p.device())));
        });
        Self { encoder, projection, norm, bilinear }
    }

    fn project(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let h = self.encoder.forward_t(x, train);
        let z = self.norm.forward(&self.projection.forward(&h)).tanh();
        (h, z)
    }
}

impl Method for Cola {
    fn name(&self) -> &'static str {
        "cola"
    }

    /// # Shapes
    /// views: 2 × `[B, 1, n_mels, T]`
    /// With several ranks, the positives' projections of every rank are
    /// the negatives (gathered with their gradient).
    fn loss(&self, batch: &Batch, train: bool) -> ssl_core::Result<Output> {
        let world = ssl_dist::world();
        let (h, a) = self.project(&batch.views[0], train);
        let (_, p) = self.project(&batch.views[1], train);
        let p = ssl_core::losses::gather_for_loss(world, &p)?;
        let logits = a.matmul(&self.bilinear).matmul(&p.tr());
        let n = logits.size()[0];
        let targets = Tensor::arange(n, (Kind::Int64, logits.device())) + world.rank() as i64 * n;
        let loss = ssl_core::losses::cross_entropy(&logits, &targets);
        let acc = tch::no_grad(|| {
            logits.argmax(1, false).eq_tensor(&targets).to_kind(Kind::Float).mean(Kind::Float)
        });
        Ok(Output::new(loss).with_metrics(vec![("pair_acc", acc)]).with_features(h))
    }

    fn features(&self, x: &Tensor) -> Tensor {
        self.encoder.forward_t(x, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::AudioCnnConfig;
    use tch::Device;

    /// The method's loss from its parts, written out independently (f64,
    /// evaluation mode, so no dropout): `logit[i][j] = Σ a[i,k] W[k,l]
    /// p[j,l]` as an einsum, and the mean over anchors of `logsumexp_j
    /// logit[i][j] − logit[i][i]`, the positive on the diagonal. The
    /// bilinear form is not symmetric, so its transpose would fail.
    #[test]
    fn the_loss_is_cross_entropy_of_bilinear_scores_with_positives_on_the_diagonal() {
        tch::manual_seed(5);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let enc = AudioEncoderConfig::Cnn(AudioCnnConfig {
            channels: 4,
            dropout: 0.3,
            ..AudioCnnConfig::byol_a(16, 16)
        });
        let cola = Cola::new(&vs.root(), &ColaConfig { encoder: enc, projection: 8 });
        vs.double();
        let x = Tensor::randn([5, 1, 16, 24], (Kind::Double, Device::Cpu));
        let y = (x.flip([3]) * 0.7 + 0.2).contiguous();
        let batch = Batch { views: vec![x.shallow_clone(), y.shallow_clone()], labels: None };
        let out = tch::no_grad(|| cola.loss(&batch, false)).unwrap();
        let (a, p) = tch::no_grad(|| (cola.project(&x, false).1, cola.project(&y, false).1));
        let w = &cola.bilinear;
        assert!((w - w.tr()).abs().max().double_value(&[]) > 1e-3, "the bilinear form is symmetric");
        let logits = tch::no_grad(|| Tensor::einsum("ik,kl,jl->ij", &[&a, w, &p], None::<i64>));
        let expected =
            (logits.logsumexp([1i64].as_slice(), false) - logits.diagonal(0, 0, 1)).mean(Kind::Double);
        let d = (&out.loss - &expected).abs().double_value(&[]);
        assert!(d < 1e-10, "COLA's loss differs from the formula by {d}");
        let transposed = tch::no_grad(|| Tensor::einsum("ik,lk,jl->ij", &[&a, w, &p], None::<i64>));
        let wrong = (transposed.logsumexp([1i64].as_slice(), false) - transposed.diagonal(0, 0, 1))
            .mean(Kind::Double);
        assert!(
            (&out.loss - wrong).abs().double_value(&[]) > 1e-6,
            "the transposed form gives the same loss"
        );
        let acc = logits.argmax(1, false).eq_tensor(&Tensor::arange(5, (Kind::Int64, Device::Cpu)));
        let acc = acc.to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
        // The pairing accuracy is kept in f32.
        assert!((out.metrics[0].1.double_value(&[]) - acc).abs() < 1e-7, "pair_acc");
    }
}

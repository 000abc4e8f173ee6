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

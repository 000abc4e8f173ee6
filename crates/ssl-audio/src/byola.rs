//! BYOL for Audio (Niizumi et al., "BYOL for Audio: Self-Supervised
//! Learning for General-Purpose Audio Representation",
//! <https://arxiv.org/abs/2103.06695>): BYOL on two views of one log-mel
//! segment, each mixed with another clip (log-mixup-exp) and randomly
//! resize-cropped ([`crate::views::ViewRecipe::byol_a`]). An online encoder,
//! projector and predictor regress the projection of the other view by a
//! momentum (EMA) target; symmetric negative-cosine loss (ssl-core's), with
//! the target momentum rising from 0.99 to 1 on a cosine schedule.
//!
//! ssl-rs's recipe (`methods::recipe`) leaves out mixup and draws each
//! spectrogram view from its own waveform view
//! ([`crate::views::ViewRecipe::byol_a_on_cola_waves`]); both chosen on the
//! keywords' validation splits (`docs/results.md`).
//!
//! [`ByolAConfig::encoder_eval_mode`] (not in the paper; on in ssl-rs's
//! recipe, `methods::build`) runs both encoders as at evaluation during
//! pretraining: on the bundled keywords a random CNN's untrained BatchNorm
//! (the identity) is part of what makes its features hard to beat, and
//! BYOL-A trained with batch statistics lost to it (`docs/results.md`).

use crate::encoder::{AudioEncoder, AudioEncoderConfig};
use serde::{Deserialize, Serialize};
use ssl_core::ema::Ema;
use ssl_core::losses::negative_cosine;
use ssl_core::method::{Batch, Method, Output};
use ssl_core::modules::{MlpHead, MlpHeadConfig};
use ssl_core::schedule::cosine_momentum;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// BYOL-A's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ByolAConfig {
    /// The encoder.
    pub encoder: AudioEncoderConfig,
    /// Projector and predictor hidden width (4096 in the paper).
    pub hidden: i64,
    /// Projection width (256).
    pub out: i64,
    /// Starting target momentum (0.99).
    pub base_momentum: f64,
    /// Run the online and target encoders in evaluation mode during
    /// pretraining as well: their BatchNorm layers normalise with running
    /// statistics that then stay at their initial mean 0 and variance 1
    /// (an affine layer that still learns its scale and shift), and their
    /// dropout is off. The projector and predictor keep batch statistics.
    /// Not in the paper (false there and in configs written before it).
    #[serde(default)]
    pub encoder_eval_mode: bool,
}

/// An encoder with its projector: `PREFIX.encoder.*`, `PREFIX.projector.*`.
struct AudioBranch {
    encoder: AudioEncoder,
    projector: MlpHead,
    encoder_eval_mode: bool,
}

impl AudioBranch {
    fn new(p: &nn::Path, cfg: &ByolAConfig) -> Self {
        let encoder = AudioEncoder::new(&(p / "encoder"), &cfg.encoder);
        let head = MlpHeadConfig::simclr(encoder.feature_dim(), cfg.hidden, cfg.out);
        Self {
            projector: MlpHead::new(&(p / "projector"), &head),
            encoder,
            encoder_eval_mode: cfg.encoder_eval_mode,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let h = self.encoder.forward_t(x, train && !self.encoder_eval_mode);
        let z = self.projector.forward_t(&h, train);
        (h, z)
    }
}

/// BYOL-A; see the module docs. Variables: `online.*`, `predictor.*`,
/// `target.*` (not trained).
pub struct ByolA {
    online: AudioBranch,
    predictor: MlpHead,
    target: AudioBranch,
    ema: Ema,
    base_momentum: f64,
}

impl ByolA {
    /// Builds the networks in `vs`; the target starts as a copy of the
    /// online branch.
    pub fn new(vs: &nn::VarStore, cfg: &ByolAConfig) -> ssl_core::Result<Self> {
        let online = AudioBranch::new(&(vs.root() / "online"), cfg);
        let predictor =
            MlpHead::new(&(vs.root() / "predictor"), &MlpHeadConfig::simclr(cfg.out, cfg.hidden, cfg.out));
        let target = AudioBranch::new(&(vs.root() / "target"), cfg);
        let ema = Ema::between(vs, "online.", "target.")?;
        Ok(Self { online, predictor, target, ema, base_momentum: cfg.base_momentum })
    }
}

impl Method for ByolA {
    fn name(&self) -> &'static str {
        "byol-a"
    }

    /// # Shapes
    /// views: 2 × `[B, 1, n_mels, T]`
    /// Each rank's mean; DDP's average over the ranks makes it the global one.
    fn loss(&self, batch: &Batch, train: bool) -> ssl_core::Result<Output> {
        let (v0, v1) = (&batch.views[0], &batch.views[1]);
        let (h0, z0) = self.online.forward_t(v0, train);
        let (_, z1) = self.online.forward_t(v1, train);
        let (p0, p1) = (self.predictor.forward_t(&z0, train), self.predictor.forward_t(&z1, train));
        let (t0, t1) =
            tch::no_grad(|| (self.target.forward_t(v0, train).1, self.target.forward_t(v1, train).1));
        let loss = (negative_cosine(&p0, &t1) + negative_cosine(&p1, &t0)) * 0.5;
        Ok(Output::new(loss).with_features(h0))
    }

    fn after_step(&mut self, step: usize, total_steps: usize) {
        self.ema.update(cosine_momentum(self.base_momentum, step, total_steps));
    }

    fn features(&self, x: &Tensor) -> Tensor {
        self.online.encoder.forward_t(x, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::AudioCnnConfig;
    use tch::{Device, Kind};

    #[test]
    fn target_starts_as_the_online_copy_and_follows_it() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = ByolAConfig {
            encoder: AudioEncoderConfig::Cnn(AudioCnnConfig {
                channels: 4,
                dropout: 0.0,
                ..AudioCnnConfig::byol_a(16, 16)
            }),
            hidden: 32,
            out: 8,
            base_momentum: 0.9,
            encoder_eval_mode: false,
        };
        let mut m = ByolA::new(&vs, &cfg).unwrap();
        let vars = vs.variables();
        let (on, tg) = (&vars["online.encoder.features.0.weight"], &vars["target.encoder.features.0.weight"]);
        assert!(on.equal(tg));
        assert!(!tg.requires_grad() && on.requires_grad());
        assert!(
            vars.contains_key("predictor.layers.3.weight")
                && vars.contains_key("target.projector.layers.0.weight")
        );
        let x = Tensor::randn([4, 1, 16, 24], (Kind::Float, Device::Cpu));
        let batch = Batch { views: vec![x.copy(), x.flip([3])], labels: None };
        let out = m.loss(&batch, true).unwrap();
        out.loss.backward();
        assert!(on.grad().defined() && !tg.grad().defined(), "the target gets no gradient");
        // Move the online weights; one EMA step moves the target 10% towards them.
        tch::no_grad(|| {
            let _ = on.shallow_clone().g_add_scalar_(1.0);
        });
        let before = tg.copy();
        m.after_step(0, 100);
        let moved = (tg - &before).mean(Kind::Float).double_value(&[]);
        assert!((moved - 0.1).abs() < 1e-3, "{moved}");
        assert_eq!(m.features(&x).size(), [4, 16]);
    }

    #[test]
    fn encoder_eval_mode_keeps_the_encoders_batch_norm_statistics_at_their_start() {
        let running_mean = |eval_mode: bool| {
            let vs = nn::VarStore::new(Device::Cpu);
            let cfg = ByolAConfig {
                encoder: AudioEncoderConfig::Cnn(AudioCnnConfig {
                    channels: 4,
                    ..AudioCnnConfig::byol_a(16, 16)
                }),
                hidden: 32,
                out: 8,
                base_momentum: 0.9,
                encoder_eval_mode: eval_mode,
            };
            let m = ByolA::new(&vs, &cfg).unwrap();
            tch::manual_seed(0);
            let x = Tensor::randn([4, 1, 16, 24], (Kind::Float, Device::Cpu)) + 3.0;
            let batch = Batch { views: vec![x.copy(), x.flip([3])], labels: None };
            m.loss(&batch, true).unwrap().loss.backward();
            let vars = vs.variables();
            let (mean, proj) = (
                &vars["online.encoder.features.1.running_mean"],
                &vars["online.projector.layers.1.running_mean"],
            );
            (mean.abs().max().double_value(&[]), proj.abs().max().double_value(&[]))
        };
        let (frozen, projector) = running_mean(true);
        assert_eq!(frozen, 0.0, "the encoder's statistics stay at their start");
        assert!(projector > 0.0, "the projector still gathers batch statistics");
        let (moving, _) = running_mean(false);
        assert!(moving > 0.1, "without the option the encoder's statistics follow the batch: {moving}");
    }
}

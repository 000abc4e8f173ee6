//! COLA (Saeed et al., "Contrastive Learning of General-Purpose Audio
//! Representations", <https://arxiv.org/abs/2010.10915>): two random crops
//! of a clip are positives, the other clips' crops in the batch negatives.
//! Each crop goes through the log-mel front end (on the training device),
//! the encoder, and a projection (Linear → LayerNorm → tanh); the
//! similarity is bilinear, `s(a, p) = aᵀ W p`, and the loss the cross
//! entropy over the batch (ssl-core's). The batch source
//! [`ClipSource`] makes the crops (with gain and noise) from decoded clips,
//! each from its own seeded generator.

use crate::augment::WaveAugment;
use crate::encoder::{AudioCnn, AudioCnnConfig};
use crate::frontend::{LogMel, LogMelConfig};
use serde::{Deserialize, Serialize};
use ssl_core::augment::{epoch_order, par_map, sample_rng};
use ssl_core::method::{Batch, BatchSource, Method, Output};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

/// COLA's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ColaConfig {
    /// The front end.
    pub frontend: LogMelConfig,
    /// The encoder.
    pub encoder: AudioCnnConfig,
    /// Projection width (512 in the paper).
    pub projection: i64,
}

/// COLA; see the module docs. Variables: `encoder.*`, `projection.*`,
/// `projection_norm.*`, `bilinear`.
pub struct Cola {
    frontend: LogMel,
    /// The encoder that is evaluated.
    pub encoder: AudioCnn,
    projection: nn::Linear,
    norm: nn::LayerNorm,
    bilinear: Tensor,
}

impl Cola {
    /// Builds the networks under `p`.
    pub fn new(p: &nn::Path, cfg: &ColaConfig) -> Self {
        let encoder = AudioCnn::new(&(p / "encoder"), &cfg.encoder);
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
        Self { frontend: LogMel::new(&cfg.frontend, p.device()), encoder, projection, norm, bilinear }
    }

    /// Standardised log-mel of waveforms, `[B, L]` → `[B, 1, n_mels, frames]`.
    fn spectrogram(&self, wave: &Tensor) -> Tensor {
        let x = self.frontend.forward(wave);
        let mean = x.mean_dim([1i64, 2].as_slice(), true, Kind::Float);
        let std = x.std_dim([1i64, 2].as_slice(), true, true) + 1e-5;
        ((x - mean) / std).unsqueeze(1)
    }

    fn project(&self, wave: &Tensor, train: bool) -> (Tensor, Tensor) {
        let h = self.encoder.forward_t(&self.spectrogram(wave), train);
        let z = self.norm.forward(&self.projection.forward(&h)).tanh();
        (h, z)
    }
}

impl Method for Cola {
    fn name(&self) -> &'static str {
        "cola"
    }

    fn loss(&self, batch: &Batch, train: bool) -> Output {
        let (h, a) = self.project(&batch.views[0], train);
        let (_, p) = self.project(&batch.views[1], train);
        let logits = a.matmul(&self.bilinear).matmul(&p.tr());
        let targets = Tensor::arange(logits.size()[0], (Kind::Int64, logits.device()));
        let loss = ssl_core::losses::cross_entropy(&logits, &targets);
        let acc = tch::no_grad(|| {
            logits.argmax(1, false).eq_tensor(&targets).to_kind(Kind::Float).mean(Kind::Float)
        });
        Output::new(loss).with_metrics(vec![("pair_acc", acc)]).with_features(h)
    }

    fn features(&self, x: &Tensor) -> Tensor {
        self.encoder.forward_t(&self.spectrogram(x), false)
    }
}

/// Two augmented crops of every clip of a batch (views `[B, crop_len]`),
/// with labels for the online probe. The last partial batch is dropped.
pub struct ClipSource<'a> {
    clips: &'a [Vec<f32>],
    labels: &'a [i64],
    aug: WaveAugment,
    batch_size: usize,
    seed: u64,
}

impl<'a> ClipSource<'a> {
    /// A source over decoded clips (at the front end's rate).
    pub fn new(
        clips: &'a [Vec<f32>],
        labels: &'a [i64],
        aug: WaveAugment,
        batch_size: usize,
        seed: u64,
    ) -> Self {
        Self { clips, labels, aug, batch_size: batch_size.max(1), seed }
    }
}

impl BatchSource for ClipSource<'_> {
    fn batches_per_epoch(&self) -> usize {
        self.clips.len() / self.batch_size
    }
    fn batch_size(&self) -> usize {
        self.batch_size
    }
    fn sample_unit(&self) -> &'static str {
        "clips"
    }
    fn batch(&self, epoch: usize, index: usize) -> ssl_core::Result<Batch> {
        let order = epoch_order(self.clips.len(), self.seed, epoch);
        let ids = &order[index * self.batch_size..(index + 1) * self.batch_size];
        let pairs: Vec<[Vec<f32>; 2]> = par_map(ids, |&i| {
            let mut rng = sample_rng(self.seed, epoch, i);
            let clip = &self.clips[i];
            let mut view = || {
                let p = self.aug.sample(clip.len(), &mut rng);
                self.aug.apply(clip, &p)
            };
            Ok::<_, ssl_core::Error>([view(), view()])
        })?;
        let b = ids.len() as i64;
        let stack = |k: usize| {
            let flat: Vec<f32> = pairs.iter().flat_map(|p| p[k].iter().copied()).collect();
            Tensor::from_slice(&flat).view([b, self.aug.crop_len as i64])
        };
        let labels = Tensor::from_slice(&ids.iter().map(|&i| self.labels[i]).collect::<Vec<_>>());
        Ok(Batch { views: vec![stack(0), stack(1)], labels: Some(labels) })
    }
}

//! From decoded clips to the encoders' input: fixed-length windows, the
//! log-mel front end, and normalisation with the training set's statistics
//! (BYOL-A's pre-normalisation), for evaluation ([`AudioInput::spectrograms`])
//! and for pretraining ([`AudioViewSource`], each method's views).
//!
//! Every clip is first centred in a window of `clip_len` samples (zeros
//! around a shorter clip, the middle of a longer one), so evaluation and
//! training see words in the same place. Views are made on the CPU from a
//! per-sample generator (`ssl_core::augment::sample_rng`), so a batch is a
//! function of `(seed, epoch, index)` alone, as in vision and text.
//!
//! - `cola`: two independent waveform views of the window (speed, shift,
//!   gain, noise at a random SNR): COLA's two crops, which for one-second
//!   keyword windows are two placements of the word.
//! - `byol-a`: one waveform view (shift, gain), then two spectrogram views
//!   of it, each mixed with another clip of the batch in log-mel space
//!   (λ ~ U(0, 0.4); each view draws its own partner) and randomly
//!   resize-cropped (BYOL-A's pipeline, [`ViewRecipe::byol_a`]); or each
//!   spectrogram view from its own waveform view drawn as COLA's
//!   ([`ViewRecipe::byol_a_on_cola_waves`], ssl-rs's recipe without mixup:
//!   `methods::recipe`).
//! - `msm`: one waveform view (shift, gain); the masking is the method's.

use crate::augment::{log_mixup_exp, SpecResizedCrop, WaveAugment};
use crate::frontend::{LogMel, LogMelConfig};
use rand::Rng;
use serde::{Deserialize, Serialize};
use ssl_core::augment::{epoch_order, par_map, sample_rng};
use ssl_core::method::{Batch, BatchSource, Part};
pub use ssl_core::signal::centred;
use tch::{Device, Tensor};

/// The window length and front end shared by evaluation and views.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioInput {
    /// The log-mel front end.
    pub frontend: LogMelConfig,
    /// Samples per window (`(frames - 1) * hop`: 15 200 gives 96 frames).
    pub clip_len: usize,
    /// Mean of the training log-mels.
    pub mean: f64,
    /// Standard deviation of the training log-mels.
    pub std: f64,
    /// Then standardise each window by its own mean and standard deviation
    /// (over bands and frames): instance normalisation, which removes the
    /// clip's level and with it most of its background noise floor, the
    /// direction that dominates BYOL-A's and random features on the noisy
    /// keywords (`examples/noise_floor.rs`). Off by default (absent from
    /// older runs' `backbone.json`: off).
    #[serde(default)]
    pub per_clip: bool,
}

impl AudioInput {
    /// Windows of `frames` frames with `frontend`, normalised with the
    /// statistics of `train` (windowed the same way).
    pub fn fit(frontend: LogMelConfig, frames: i64, train: &[Vec<f32>]) -> Self {
        let clip_len = ((frames - 1) * frontend.hop_length) as usize;
        let mut input = Self { frontend, clip_len, mean: 0.0, std: 1.0, per_clip: false };
        let x = input.log_mel(&train.iter().map(|c| centred(c, clip_len)).collect::<Vec<_>>());
        let (std, mean) = x.std_mean(true);
        input.mean = mean.double_value(&[]);
        input.std = std.double_value(&[]).max(1e-5);
        input
    }

    /// An error naming the field when the input cannot be computed (what a
    /// hand-edited `backbone.json` may hold): a sample rate, FFT, hop, band
    /// count or window length that is not positive, or statistics that are
    /// not finite (a standard deviation of 0 included).
    pub fn check(&self) -> crate::Result<()> {
        let f = &self.frontend;
        let bad = [
            ("frontend.sample_rate", f.sample_rate == 0),
            ("frontend.n_fft", f.n_fft <= 0),
            ("frontend.hop_length", f.hop_length <= 0),
            ("frontend.n_mels", f.n_mels <= 0),
            ("clip_len", self.clip_len == 0),
            ("mean", !self.mean.is_finite()),
            ("std", !(self.std.is_finite() && self.std > 0.0)),
        ];
        match bad.iter().find(|(_, b)| *b) {
            Some((field, _)) => {
                Err(crate::Error::Config(format!("the audio input's `{field}` is out of range")))
            }
            None => Ok(()),
        }
    }

    /// Mel bands.
    pub fn n_mels(&self) -> i64 {
        self.frontend.n_mels
    }

    /// Frames per window.
    pub fn frames(&self) -> i64 {
        self.clip_len as i64 / self.frontend.hop_length + 1
    }

    /// Log-mel of equal-length waveforms, unnormalised, on the CPU.
    ///
    /// # Shapes
    /// `n × clip_len` samples → `[n, n_mels, frames]`
    fn log_mel<W: AsRef<[f32]>>(&self, windows: &[W]) -> Tensor {
        let frontend = LogMel::new(&self.frontend, Device::Cpu);
        let chunks: Vec<Tensor> = windows
            .chunks(256)
            .map(|c| {
                let flat: Vec<f32> = c.iter().flat_map(|w| w.as_ref().iter().copied()).collect();
                frontend.forward(&Tensor::from_slice(&flat).view([c.len() as i64, self.clip_len as i64]))
            })
            .collect();
        Tensor::cat(&chunks, 0)
    }

    /// Normalised log-mel of equal-length waveforms: with the training
    /// set's statistics, then, with `per_clip`, each window with its own.
    ///
    /// # Shapes
    /// `n × clip_len` samples → `[n, 1, n_mels, frames]`
    pub fn normalised<W: AsRef<[f32]>>(&self, windows: &[W]) -> Tensor {
        let x = (self.log_mel(windows) - self.mean) / self.std;
        let x = if self.per_clip {
            let dims = [1i64, 2].as_slice();
            let (std, mean) = x.std_mean_dim(dims, true, true);
            (x - mean) / std.clamp_min(1e-5)
        } else {
            x
        };
        x.unsqueeze(1)
    }

    /// The evaluation input of clips: centred windows, log-mel, normalised.
    ///
    /// # Shapes
    /// `n` clips → `[n, 1, n_mels, frames]`
    pub fn spectrograms(&self, clips: &[Vec<f32>]) -> Tensor {
        self.normalised(&clips.iter().map(|c| centred(c, self.clip_len)).collect::<Vec<_>>())
    }
}

/// Which views a method trains on; see the module docs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ViewRecipe {
    /// Two independent waveform views.
    Cola {
        /// Each view's waveform augmentation.
        wave: WaveAugment,
    },
    /// One waveform view, two mixup + random-resize-crop spectrogram views.
    ByolA {
        /// The waveform augmentation.
        wave: WaveAugment,
        /// Largest mixup ratio (BYOL-A: 0.4).
        mixup: f64,
        /// The random resized crop.
        crop: SpecResizedCrop,
        /// Each spectrogram view from its own waveform view (COLA's
        /// draws), instead of both from one (BYOL-A's paper).
        #[serde(default)]
        wave_per_view: bool,
    },
    /// One waveform view.
    Single {
        /// The waveform augmentation.
        wave: WaveAugment,
    },
}

impl ViewRecipe {
    /// COLA's views for windows of `clip_len`: speed ×0.85–1.15, shifts up
    /// to 150 ms, ±6 dB, and white noise at 0–20 dB SNR on every view, so
    /// that two views of a clip differ in their noise level (chosen on the
    /// keywords' validation splits over noise at 5–30 dB on half of the
    /// views; `docs/results.md`).
    pub fn cola(clip_len: usize) -> Self {
        Self::Cola { wave: Self::cola_wave(clip_len) }
    }

    /// BYOL-A's views: shifts up to 150 ms and ±6 dB on the waveform; mixup
    /// up to 0.4 and crops of 0.6–1.5 on a 1.5× canvas on the log-mel.
    pub fn byol_a(clip_len: usize) -> Self {
        Self::byol_a_on(Self::light(clip_len), false)
    }

    /// BYOL-A's spectrogram views (mixup, random resized crop), each made
    /// from its own waveform view drawn as COLA's are (speed, shift, gain,
    /// noise).
    pub fn byol_a_on_cola_waves(clip_len: usize) -> Self {
        Self::byol_a_on(Self::cola_wave(clip_len), true)
    }

    /// The same views with BYOL-A's largest mixup ratio set to `ratio` (0:
    /// no mixup); other recipes are returned unchanged.
    pub fn with_mixup(mut self, ratio: f64) -> Self {
        if let Self::ByolA { mixup, .. } = &mut self {
            *mixup = ratio;
        }
        self
    }

    fn byol_a_on(wave: WaveAugment, wave_per_view: bool) -> Self {
        Self::ByolA {
            wave,
            mixup: 0.4,
            crop: SpecResizedCrop { scale: (0.6, 1.5), virtual_scale: 1.5 },
            wave_per_view,
        }
    }

    fn cola_wave(clip_len: usize) -> WaveAugment {
        WaveAugment {
            crop_len: clip_len,
            shift_max: 2_400,
            noise_p: 1.0,
            snr_db: (0.0, 20.0),
            speed: (0.85, 1.15),
            ..WaveAugment::default_16k()
        }
    }

    /// One lightly augmented view (masked modelling, fine-tuning).
    pub fn single(clip_len: usize) -> Self {
        Self::Single { wave: Self::light(clip_len) }
    }

    fn light(clip_len: usize) -> WaveAugment {
        WaveAugment { crop_len: clip_len, shift_max: 2_400, noise_p: 0.0, ..WaveAugment::default_16k() }
    }

    /// The waveform augmentation of the views, to change it.
    pub fn wave_mut(&mut self) -> &mut WaveAugment {
        match self {
            Self::Cola { wave } | Self::ByolA { wave, .. } | Self::Single { wave } => wave,
        }
    }

    fn wave(&self) -> &WaveAugment {
        match self {
            Self::Cola { wave } | Self::ByolA { wave, .. } | Self::Single { wave } => wave,
        }
    }
}

/// Batches of views of clips, with labels (for the online probe and
/// fine-tuning). The last partial batch is dropped.
pub struct AudioViewSource<'a> {
    clips: &'a [Vec<f32>],
    labels: &'a [i64],
    input: &'a AudioInput,
    recipe: ViewRecipe,
    batch_size: usize,
    seed: u64,
}

impl<'a> AudioViewSource<'a> {
    /// A source over decoded clips (at the front end's rate); `labels` has
    /// one entry per clip (use any value for unlabelled clips).
    pub fn new(
        clips: &'a [Vec<f32>],
        labels: &'a [i64],
        input: &'a AudioInput,
        recipe: ViewRecipe,
        batch_size: usize,
        seed: u64,
    ) -> Self {
        assert_eq!(clips.len(), labels.len(), "one label per clip");
        Self { clips, labels, input, recipe, batch_size: batch_size.max(1), seed }
    }
}

impl BatchSource for AudioViewSource<'_> {
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
        self.views_of(epoch, &order[index * self.batch_size..(index + 1) * self.batch_size])
    }
    /// Only the part's clips, except for BYOL-A, whose mixup partners are
    /// other clips of the whole batch: there the batch is built and cut.
    fn part(&self, epoch: usize, index: usize, part: Part) -> ssl_core::Result<Batch> {
        if matches!(self.recipe, ViewRecipe::ByolA { .. }) {
            return Ok(self.batch(epoch, index)?.part(part));
        }
        let order = epoch_order(self.clips.len(), self.seed, epoch);
        self.views_of(epoch, part.of(&order[index * self.batch_size..(index + 1) * self.batch_size]))
    }
}

impl AudioViewSource<'_> {
    /// The views of clips `ids` (each from its own generator).
    fn views_of(&self, epoch: usize, ids: &[usize]) -> ssl_core::Result<Batch> {
        let wave = self.recipe.wave();
        let n_wave = match self.recipe {
            ViewRecipe::Cola { .. } | ViewRecipe::ByolA { wave_per_view: true, .. } => 2,
            _ => 1,
        };
        // Per sample: its waveform views, then its spectrogram draws.
        // A spectrogram draw: mixup ratio, crop box, and the mixup partner
        // as an offset in the batch (1..n, so never the clip itself).
        type Sample = (Vec<Vec<f32>>, Vec<(f64, crate::augment::CropBox, usize)>);
        let (f, t) = (self.input.n_mels(), self.input.frames());
        let n = ids.len();
        let samples: Vec<Sample> = par_map(ids, |&i| {
            let mut rng = sample_rng(self.seed, epoch, i);
            let window = centred(&self.clips[i], self.input.clip_len);
            let views = (0..n_wave)
                .map(|_| {
                    let p = wave.sample(window.len(), &mut rng);
                    wave.apply(&window, &p)
                })
                .collect();
            let spec_draws = match &self.recipe {
                ViewRecipe::ByolA { mixup, crop, .. } => {
                    let mut draws: Vec<_> = (0..2)
                        .map(|_| (rng.gen_range(0.0..=*mixup), crop.sample(f, t, &mut rng), 0))
                        .collect();
                    // Drawn last, so that the other draws do not depend on
                    // the batch size.
                    for d in &mut draws {
                        d.2 = if n > 1 { rng.gen_range(1..n) } else { 0 };
                    }
                    draws
                }
                _ => Vec::new(),
            };
            Ok::<_, ssl_core::Error>((views, spec_draws))
        })?;
        let wave_view = |k: usize| {
            let w: Vec<&[f32]> = samples.iter().map(|s| &s.0[k][..]).collect();
            self.input.normalised(&w)
        };
        let views = match &self.recipe {
            ViewRecipe::ByolA { crop, .. } => {
                let xs: Vec<Tensor> = (0..n_wave).map(|k| wave_view(k).squeeze_dim(1)).collect();
                (0..2)
                    .map(|v| {
                        let x = &xs[v.min(n_wave - 1)];
                        let lambdas: Vec<f32> = samples.iter().map(|s| s.1[v].0 as f32).collect();
                        let boxes: Vec<_> = samples.iter().map(|s| s.1[v].1).collect();
                        let partners: Vec<i64> =
                            samples.iter().enumerate().map(|(b, s)| ((b + s.1[v].2) % n) as i64).collect();
                        let mixed =
                            log_mixup_exp(x, &Tensor::from_slice(&partners), &Tensor::from_slice(&lambdas));
                        crop.apply(&mixed, &boxes).unsqueeze(1)
                    })
                    .collect()
            }
            _ => (0..n_wave).map(wave_view).collect(),
        };
        let labels = Tensor::from_slice(&ids.iter().map(|&i| self.labels[i]).collect::<Vec<_>>());
        Ok(Batch { views, labels: Some(labels) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// Mean and standard deviation of a tensor.
    fn view_stats(x: &Tensor) -> (f64, f64) {
        let (s, m) = x.to_kind(Kind::Float).std_mean(true);
        (m.double_value(&[]), s.double_value(&[]))
    }

    fn word(n: usize, freq: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * freq).sin() * 0.5).collect()
    }

    fn clips() -> (Vec<Vec<f32>>, Vec<i64>) {
        let c: Vec<Vec<f32>> = (0..8).map(|i| word(4_000 + 500 * i, 0.05 + 0.02 * i as f32)).collect();
        (c, (0..8).collect())
    }

    #[test]
    fn evaluation_input_is_normalised_with_training_statistics() {
        let (c, _) = clips();
        let input = AudioInput::fit(LogMelConfig::default(), 96, &c);
        assert_eq!(input.clip_len, 15_200);
        assert_eq!(input.frames(), 96);
        let x = input.spectrograms(&c);
        assert_eq!(x.size(), [8, 1, 64, 96]);
        let (m, s) = view_stats(&x);
        assert!(m.abs() < 1e-4 && (s - 1.0).abs() < 1e-3, "{m} {s}");
        // Louder clips move the mean: the statistics are fixed, not per batch.
        let loud: Vec<Vec<f32>> = c.iter().map(|v| v.iter().map(|x| x * 4.0).collect()).collect();
        assert!(view_stats(&input.spectrograms(&loud)).0 > 0.1);
        // Per clip: every window has mean 0 and std 1, whatever its level.
        let per_clip = AudioInput { per_clip: true, ..input };
        let x = per_clip.spectrograms(&c);
        for i in 0..8 {
            let (m, s) = view_stats(&x.get(i));
            assert!(m.abs() < 1e-4 && (s - 1.0).abs() < 1e-3, "clip {i}: {m} {s}");
        }
        // Clips with energy in every band and frame (no zero padding or
        // silent bands, where the log-mel's floor holds) look the same
        // louder.
        tch::manual_seed(0);
        let full: Vec<Vec<f32>> = (0..4)
            .map(|_| Vec::<f32>::try_from(Tensor::randn([16_000], (Kind::Float, Device::Cpu)) * 0.1).unwrap())
            .collect();
        let loud: Vec<Vec<f32>> = full.iter().map(|v| v.iter().map(|x| x * 4.0).collect()).collect();
        let d = (per_clip.spectrograms(&loud) - per_clip.spectrograms(&full)).abs().max().double_value(&[]);
        assert!(d < 0.05, "louder clips look the same per clip: {d}");
    }

    #[test]
    fn views_are_seeded_and_follow_the_recipe() {
        let (c, y) = clips();
        let input = AudioInput::fit(LogMelConfig::default(), 96, &c);
        for (recipe, n_views) in [
            (ViewRecipe::cola(input.clip_len), 2),
            (ViewRecipe::byol_a(input.clip_len), 2),
            (ViewRecipe::byol_a_on_cola_waves(input.clip_len), 2),
            (ViewRecipe::single(input.clip_len), 1),
        ] {
            let src = AudioViewSource::new(&c, &y, &input, recipe.clone(), 4, 3);
            assert_eq!(src.batches_per_epoch(), 2);
            let b = src.batch(1, 0).unwrap();
            assert_eq!(b.views.len(), n_views, "{recipe:?}");
            for v in &b.views {
                assert_eq!(v.size(), [4, 1, 64, 96]);
            }
            // Same (seed, epoch, index): the same batch; another epoch: not.
            assert!(src.batch(1, 0).unwrap().views[0].equal(&b.views[0]));
            assert!(!src.batch(2, 0).unwrap().views[0].equal(&b.views[0]));
            if n_views == 2 {
                let d = (&b.views[0] - &b.views[1]).abs().mean(Kind::Float).double_value(&[]);
                assert!(d > 1e-3, "the two views differ: {recipe:?}");
            }
            // Labels follow the clips.
            let labels = Vec::<i64>::try_from(b.labels.unwrap()).unwrap();
            let order = epoch_order(8, 3, 1);
            assert_eq!(labels, order[..4].iter().map(|&i| i as i64).collect::<Vec<_>>());
        }
    }
}

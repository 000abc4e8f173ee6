//! The audio methods by name (`cola`, `byol-a`, `msm`), with each one's
//! views, default encoder and training recipe, so that `train-audio` and
//! library users build them the same way.
//!
//! `msm` is masked spectrogram modelling (Audio-MAE, <https://arxiv.org/abs/2207.06405>;
//! SSAST, <https://arxiv.org/abs/2110.09784>): ssl-core's [`Mae`] (the same
//! code as vision's MAE) on `8 × 8` patches of the normalised log-mel, with
//! 75% of the patches removed and raw (not per-patch normalised) targets,
//! since the spectrogram is already standardised. Its features stack each
//! time step's tokens over frequency and average over time (MSM-MAE,
//! <https://arxiv.org/abs/2204.12260>), as BYOL-A's CNN keeps its bands.

use crate::byola::{ByolA, ByolAConfig};
use crate::cola::{Cola, ColaConfig};
use crate::encoder::{AudioCnnConfig, AudioEncoderConfig};
use crate::views::{AudioInput, ViewRecipe};
use crate::{Error, Result};
use serde::Serialize;
use ssl_core::config::{self, Override};
use ssl_core::mae::{Mae, MaeConfig};
use ssl_core::method::{Batch, Method, Output};
use ssl_core::optim::OptimizerConfig;
use ssl_core::vit::Pool;
use tch::nn;
use tch::Tensor;

/// The methods `build` knows.
pub const METHODS: [&str; 3] = ["cola", "byol-a", "msm"];

/// Where each method keeps the encoder that is evaluated: `encoder.`
/// (COLA), `online.encoder.` (BYOL-A) or the root (MSM's MAE encoder).
pub const ENCODER_PREFIXES: [&str; 3] = ["encoder.", "online.encoder.", ""];

/// Masked spectrogram modelling: ssl-core's MAE under another name.
pub struct Msm(Mae);

impl Method for Msm {
    fn name(&self) -> &'static str {
        "msm"
    }
    /// Each sample's loss stands alone: no batch statistics or negatives.
    fn min_micro_batch(&self) -> usize {
        1
    }
    fn loss(&self, batch: &Batch, train: bool) -> ssl_core::Result<Output> {
        self.0.loss(batch, train)
    }
    fn features(&self, x: &Tensor) -> Tensor {
        self.0.features(x)
    }
}

/// The encoder a method uses when none is asked for: BYOL-A's CNN (1024
/// wide) for `cola` and `byol-a`, [`transformer`] for `msm`.
pub fn default_encoder(method: &str, input: &AudioInput) -> AudioEncoderConfig {
    match method {
        "msm" => transformer(input),
        _ => cnn(input),
    }
}

/// Whether a method's input standardises each clip by its own statistics
/// unless told ([`AudioInput::per_clip`]): BYOL-A's does. On the bundled
/// keywords' validation split it takes the background noise level out of
/// the input, which BYOL-A's features otherwise follow; COLA learns to
/// drop that level itself (`docs/results.md`).
pub fn default_per_clip_norm(method: &str) -> bool {
    method == "byol-a"
}

/// BYOL-A's CNN (64 channels), 1024 wide, with BYOL-A's dropout.
pub fn cnn(input: &AudioInput) -> AudioEncoderConfig {
    AudioEncoderConfig::Cnn(AudioCnnConfig::byol_a(input.n_mels(), 1024))
}

/// BYOL-A v2's CNN (AudioNTT2022): two blocks of 64 channels, an MLP 2048
/// wide, the convolutional features stacked beside it (3,072 wide for 64
/// bands, the paper's).
pub fn cnn_v2(input: &AudioInput) -> AudioEncoderConfig {
    AudioEncoderConfig::Cnn(AudioCnnConfig::byol_a_v2(input.n_mels(), 2048))
}

/// A 4-block, 128-wide patch transformer on `8 × 8` patches whose tokens
/// are stacked over frequency and averaged over time (MSM-MAE's pooling,
/// [`Pool::Stacked`]: `n_mels / 8 × 128` wide, 1,024 for 64 bands), chosen
/// over the mean of all tokens on the keywords' validation split
/// (`docs/results.md`).
pub fn transformer(input: &AudioInput) -> AudioEncoderConfig {
    let vit = AudioEncoderConfig::transformer_vit(input.n_mels(), input.frames(), 8, 128, 4);
    AudioEncoderConfig::Transformer(vit.with_pool(Pool::Stacked))
}

/// A method's views, optimizer and default epochs.
#[derive(Clone, Debug, Serialize)]
pub struct Recipe {
    /// The views it trains on.
    pub views: ViewRecipe,
    /// Optimizer and peak learning rate.
    pub optimizer: OptimizerConfig,
    /// Epochs of the default run.
    pub epochs: usize,
}

/// The recipe of `method` for `input`'s windows.
pub fn recipe(method: &str, input: &AudioInput) -> Result<Recipe> {
    let n = input.clip_len;
    Ok(match method {
        "cola" => {
            Recipe { views: ViewRecipe::cola(n), optimizer: OptimizerConfig::adamw(1e-3, 1e-4), epochs: 30 }
        }
        // No mixup (the paper's is up to 0.4): on the keywords the mixed-in
        // clip is another word, and without it BYOL-A beat random init on
        // the validation split where with it it tied. Each view from its
        // own waveform draw (COLA's speed, shift, gain and noise), not both
        // from one: 16 points more kNN summed over four validation splits,
        // two of them of unseen voices (docs/results.md).
        "byol-a" => Recipe {
            views: ViewRecipe::byol_a_on_cola_waves(n).with_mixup(0.0),
            optimizer: OptimizerConfig::adamw(1e-3, 1e-4),
            epochs: 30,
        },
        // 300 epochs (1,500 steps on the keywords): chosen on the validation
        // split over 40, and over batches of 16 for 80 epochs.
        "msm" => Recipe {
            views: ViewRecipe::single(n),
            optimizer: OptimizerConfig::adamw(1.5e-3, 0.05),
            epochs: 300,
        },
        other => return Err(unknown(other)),
    })
}

fn unknown(method: &str) -> Error {
    Error::Config(format!("unknown method `{method}` (expected one of {})", METHODS.join(", ")))
}

/// A method from [`build`], with what `train-audio` records and needs of
/// its resolved config.
pub struct Built {
    /// The method, its weights in the `VarStore` it was built in.
    pub method: Box<dyn Method>,
    /// Its resolved config (after the overrides), as `config.json`
    /// records it under `model`.
    pub config: serde_json::Value,
    /// Whether it keeps its encoder in evaluation mode in pretraining
    /// (BYOL-A's [`ByolAConfig::encoder_eval_mode`]): its BatchNorm
    /// statistics never leave their start, so `train-audio` fine-tunes it,
    /// and the random-init encoder beside it, that way too unless told.
    pub encoder_eval_mode: bool,
}

/// Builds `method` with `encoder` in `vs`, after `overrides` (`--set
/// key=value`) replace fields of its config. A config that `overrides`
/// made unbuildable (heads that do not divide a width, a negative width)
/// is an error naming them.
pub fn build(
    method: &str,
    vs: &nn::VarStore,
    encoder: &AudioEncoderConfig,
    overrides: &[Override],
) -> Result<Built> {
    config::build_with(&format!("{method}'s model"), overrides, || {
        build_unchecked(method, vs, encoder, overrides)
    })
}

fn build_unchecked(
    method: &str,
    vs: &nn::VarStore,
    encoder: &AudioEncoderConfig,
    overrides: &[Override],
) -> Result<Built> {
    let what = format!("{method}'s config");
    let json = |v: serde_json::Result<serde_json::Value>| v.unwrap_or(serde_json::Value::Null);
    Ok(match method {
        "cola" => {
            let cfg =
                config::apply(ColaConfig { encoder: encoder.clone(), projection: 512 }, overrides, &what)?;
            Built {
                method: Box::new(Cola::new(&vs.root(), &cfg)),
                config: json(serde_json::to_value(&cfg)),
                encoder_eval_mode: false,
            }
        }
        "byol-a" => {
            let cfg = config::apply(
                ByolAConfig {
                    encoder: encoder.clone(),
                    hidden: 2048,
                    out: 256,
                    base_momentum: 0.99,
                    // Chosen on the keywords' validation split: with batch
                    // statistics BYOL-A lost 22 points of kNN to random
                    // init, with these it ties (docs/results.md).
                    encoder_eval_mode: true,
                },
                overrides,
                &what,
            )?;
            Built {
                encoder_eval_mode: cfg.encoder_eval_mode,
                config: json(serde_json::to_value(&cfg)),
                method: Box::new(ByolA::new(vs, &cfg)?),
            }
        }
        "msm" => {
            let AudioEncoderConfig::Transformer(vit) = encoder else {
                return Err(Error::Config("msm masks patches: it needs --encoder transformer".into()));
            };
            let cfg = config::apply(
                MaeConfig { norm_pix_loss: false, ..MaeConfig::light(vit.clone()) },
                overrides,
                &what,
            )?;
            Built {
                method: Box::new(Msm(Mae::new(&vs.root(), &cfg))),
                config: json(serde_json::to_value(&cfg)),
                encoder_eval_mode: false,
            }
        }
        other => return Err(unknown(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::AudioEncoder;
    use crate::frontend::LogMelConfig;
    use tch::{Device, Kind};

    #[test]
    fn every_method_builds_trains_one_step_and_exposes_its_encoder() {
        let input = AudioInput {
            frontend: LogMelConfig::default(),
            clip_len: 15_200,
            mean: 0.0,
            std: 1.0,
            per_clip: false,
        };
        for method in METHODS {
            let enc = match default_encoder(method, &input) {
                AudioEncoderConfig::Cnn(c) => {
                    AudioEncoderConfig::Cnn(AudioCnnConfig { channels: 4, dim: 32, ..c })
                }
                AudioEncoderConfig::Transformer(_) => AudioEncoderConfig::transformer(64, 96, 16, 32, 1),
            };
            let vs = nn::VarStore::new(Device::Cpu);
            let m = build(method, &vs, &enc, &[]).unwrap().method;
            assert_eq!(m.name(), method);
            let x = Tensor::randn([4, 1, 64, 96], (Kind::Float, Device::Cpu));
            let batch = Batch { views: vec![x.copy(), x.flip([3])], labels: None };
            let loss = m.loss(&batch, true).unwrap().loss;
            assert!(loss.double_value(&[]).is_finite(), "{method}");
            loss.backward();
            assert_eq!(m.features(&x).size(), [4, enc.feature_dim()], "{method}");
            // The evaluated encoder's weights are found under a known prefix.
            let copy = nn::VarStore::new(Device::Cpu);
            let e = AudioEncoder::new(&copy.root(), &enc);
            ssl_core::finetune::copy_encoder(&vs, &copy, &ENCODER_PREFIXES).unwrap();
            let f = tch::no_grad(|| m.features(&x));
            assert!(f.allclose(
                &tch::no_grad(|| tch::nn::ModuleT::forward_t(&e, &x, false)),
                1e-5,
                1e-5,
                false
            ));
            assert!(recipe(method, &input).is_ok());
        }
        // Only BYOL-A keeps its encoder in evaluation mode, and `--set`
        // turns that off.
        let small = AudioEncoderConfig::Cnn(AudioCnnConfig {
            channels: 4,
            dim: 32,
            ..AudioCnnConfig::byol_a(64, 32)
        });
        let eval_mode = |method: &str, set: &[&str]| {
            let set: Vec<Override> = set.iter().map(|s| s.parse().unwrap()).collect();
            let vs = nn::VarStore::new(Device::Cpu);
            let built = build(method, &vs, &small, &set).unwrap();
            assert_eq!(
                built.config["encoder_eval_mode"].as_bool(),
                Some(built.encoder_eval_mode).filter(|_| method == "byol-a")
            );
            built.encoder_eval_mode
        };
        assert!(eval_mode("byol-a", &[]));
        assert!(!eval_mode("byol-a", &["encoder_eval_mode=false"]));
        assert!(!eval_mode("cola", &[]));
        let vs = nn::VarStore::new(Device::Cpu);
        let err = build("msm", &vs, &cnn(&input), &[]).err().unwrap().to_string();
        assert!(err.contains("--encoder transformer"), "{err}");
        assert!(build("wav2vec", &vs, &cnn(&input), &[])
            .err()
            .unwrap()
            .to_string()
            .contains("unknown method"));
    }
}

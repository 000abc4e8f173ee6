//! Encoder weights in and out: `--init` from an ssl-rs run's
//! `model.safetensors` or `backbone.safetensors` (or a timm ViT file for the
//! patch transformer), and `backbone.safetensors`, the trained encoder
//! alone: the CNN under the PyTorch layout of BYOL-A's AudioNTT2020
//! encoder (`features.0.weight`, `fc.3.bias`; `tools/golden/audio_cnn.py`),
//! the transformer under timm's names.

use crate::encoder::{AudioEncoder, AudioEncoderConfig};
use crate::views::AudioInput;
use crate::Result;
use ssl_core::weights::{self, EncoderKeys, InitReport, KeyRules};
use std::path::Path;
use tch::{nn, Device, Tensor};

/// The encoder's state-dict names and shapes.
pub fn encoder_keys(cfg: &AudioEncoderConfig) -> EncoderKeys {
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = AudioEncoder::new(&vs.root(), cfg);
    weights::keys_of(&vs)
}

/// A file may hold timm's classifier (`head.*`), left out, and may lack
/// BatchNorm's `num_batches_tracked`.
pub const KEY_RULES: KeyRules = KeyRules {
    ignore_extra: |k| k.starts_with("head."),
    may_be_missing: |k| k.ends_with(".num_batches_tracked"),
};

/// Loads `file` into every copy of the encoder in a method's var store
/// (BYOL-A's online branch and its target alike); see
/// [`ssl_core::weights::init_encoder`].
pub fn init_encoder(file: &Path, method_vs: &nn::VarStore, cfg: &AudioEncoderConfig) -> Result<InitReport> {
    init_encoder_under(file, None, method_vs, cfg)
}

/// [`init_encoder`] from the tensors under `prefix` in the file when it is
/// given (`target.encoder.`: BYOL-A's momentum copy in a run's
/// `model.safetensors`); see [`ssl_core::weights::init_encoder_under`].
pub fn init_encoder_under(
    file: &Path,
    prefix: Option<&str>,
    method_vs: &nn::VarStore,
    cfg: &AudioEncoderConfig,
) -> Result<InitReport> {
    Ok(weights::init_encoder_under(file, prefix, method_vs, &encoder_keys(cfg), KEY_RULES)?)
}

/// Which layout an export follows.
pub fn reference_library(cfg: &AudioEncoderConfig) -> &'static str {
    match cfg {
        AudioEncoderConfig::Cnn(_) => "byol-a-cnn",
        AudioEncoderConfig::Transformer(_) => "timm",
    }
}

/// The trained encoder's tensors (`encoder.`, `online.encoder.` or MSM's at
/// the root), renamed to the encoder's own names, on the CPU.
pub fn encoder_tensors(method_vs: &nn::VarStore, cfg: &AudioEncoderConfig) -> Result<Vec<(String, Tensor)>> {
    let keys = encoder_keys(cfg);
    let prefix = weights::evaluated_prefix(method_vs, &keys)?;
    Ok(weights::encoder_tensors(method_vs, &keys, &prefix)?)
}

/// Writes the trained encoder into `dir` with
/// [`ssl_core::weights::export_encoder`]: `backbone.safetensors`,
/// `backbone.pt` (TorchScript: the CNN takes any batch and length, the
/// transformer any batch of `sample`'s shape),
/// `check_features.safetensors` (`sample`: log-mel spectrograms
/// `[N, 1, n_mels, frames]`, and their features) and `backbone.json` (with
/// `input`, the front end and normalisation, which `embed-audio` applies).
pub fn export_encoder(
    method_vs: &nn::VarStore,
    cfg: &AudioEncoderConfig,
    input: &AudioInput,
    sample: &Tensor,
    dir: &Path,
) -> Result<()> {
    let named = encoder_tensors(method_vs, cfg)?;
    let meta = serde_json::json!({
        "modality": "audio", "library": reference_library(cfg), "encoder": cfg, "input": input,
    });
    Ok(weights::export_encoder(&named, |p| AudioEncoder::new(p, cfg), sample, dir, meta)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::AudioCnnConfig;

    #[test]
    fn the_cnn_round_trips_through_an_export_into_byol_a() {
        let cfg = AudioEncoderConfig::Cnn(AudioCnnConfig::byol_a(16, 32));
        let dir = tempfile::tempdir().unwrap();
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = crate::methods::build("byol-a", &vs, &cfg, &[]).unwrap().method;
        let x = Tensor::randn([3, 1, 16, 24], (tch::Kind::Float, Device::Cpu));
        let input = AudioInput {
            frontend: crate::frontend::LogMelConfig { n_mels: 16, ..Default::default() },
            clip_len: 3680,
            mean: 0.0,
            std: 1.0,
            per_clip: false,
        };
        export_encoder(&vs, &cfg, &input, &x, dir.path()).unwrap();
        let named = Tensor::read_safetensors(dir.path().join("backbone.safetensors")).unwrap();
        assert!(named.iter().any(|(k, _)| k == "features.1.num_batches_tracked"));
        assert!(named.iter().all(|(k, _)| !k.contains("online")));
        let want = tch::no_grad(|| m.features(&x));
        let traced = tch::CModule::load(dir.path().join("backbone.pt")).unwrap();
        let got = tch::no_grad(|| traced.forward_ts(&[&x]).unwrap());
        assert!((got - &want).abs().max().double_value(&[]) < 1e-5);
        // Another batch size and length.
        let y = Tensor::randn([1, 1, 16, 40], (tch::Kind::Float, Device::Cpu));
        let got = tch::no_grad(|| traced.forward_ts(&[&y]).unwrap());
        assert!((got - tch::no_grad(|| m.features(&y))).abs().max().double_value(&[]) < 1e-5);
        tch::manual_seed(1);
        let vs2 = nn::VarStore::new(Device::Cpu);
        let m2 = crate::methods::build("cola", &vs2, &cfg, &[]).unwrap().method;
        let r = init_encoder(&dir.path().join("backbone.safetensors"), &vs2, &cfg).unwrap();
        assert_eq!(r.loaded, named.len());
        assert!((tch::no_grad(|| m2.features(&x)) - want).abs().max().double_value(&[]) < 1e-5);
    }
}

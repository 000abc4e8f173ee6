//! BYOL-A's encoder and v2's against their PyTorch layouts
//! (`tools/golden/audio_cnn.py`): the same state-dict keys and, in eval
//! mode, the same features to 1e-5.

use ssl_audio::encoder::{AudioCnn, AudioCnnConfig};
use std::collections::HashMap;
use tch::nn::{self, ModuleT};
use tch::{Device, Tensor};

#[test]
fn features_match_pytorch() {
    check("audio_cnn", &AudioCnnConfig { channels: 16, ..AudioCnnConfig::byol_a(32, 48) }, 48);
}

#[test]
fn v2_features_match_pytorch() {
    // Two blocks leave 32 / 4 = 8 bands of 16 channels: 128 stacked + 48.
    check("audio_cnn_v2", &AudioCnnConfig { channels: 16, ..AudioCnnConfig::byol_a_v2(32, 48) }, 176);
}

fn check(fixture: &str, cfg: &AudioCnnConfig, dim: i64) {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/{fixture}.safetensors"));
    let f: HashMap<String, Tensor> = Tensor::read_safetensors(&p).unwrap().into_iter().collect();
    let vs = nn::VarStore::new(Device::Cpu);
    assert_eq!(cfg.feature_dim(), dim);
    let model = AudioCnn::new(&vs.root(), cfg);
    let mut ours: Vec<String> = vs.variables().into_keys().collect();
    let mut theirs: Vec<String> = f.keys().filter(|k| *k != "input" && *k != "output").cloned().collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "state-dict keys");
    tch::no_grad(|| {
        for (name, mut v) in vs.variables() {
            v.copy_(&f[&name]);
        }
    });
    let y = tch::no_grad(|| model.forward_t(&f["input"], false));
    assert_eq!(y.size(), [2, dim]);
    let d = (&y - &f["output"]).abs().max().double_value(&[]);
    eprintln!("max |diff| {d:.2e}");
    assert!(d < 1e-5, "features differ by {d}");
    // [B, F, T] input works too.
    let y3 = tch::no_grad(|| model.forward_t(&f["input"].squeeze_dim(1), false));
    assert!(y3.equal(&y));
}

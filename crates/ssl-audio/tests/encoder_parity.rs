//! BYOL-A's encoder against its PyTorch layout (`tools/golden/audio_cnn.py`):
//! the same state-dict keys and, in eval mode, the same features to 1e-5.

use ssl_audio::encoder::{AudioCnn, AudioCnnConfig};
use std::collections::HashMap;
use tch::nn::{self, ModuleT};
use tch::{Device, Tensor};

#[test]
fn features_match_pytorch() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio_cnn.safetensors");
    let f: HashMap<String, Tensor> = Tensor::read_safetensors(&p).unwrap().into_iter().collect();
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = AudioCnnConfig { n_mels: 32, channels: 16, dim: 48, dropout: 0.3 };
    let model = AudioCnn::new(&vs.root(), &cfg);
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
    assert_eq!(y.size(), [2, 48]);
    let d = (&y - &f["output"]).abs().max().double_value(&[]);
    eprintln!("max |diff| {d:.2e}");
    assert!(d < 1e-5, "features differ by {d}");
    // [B, F, T] input works too.
    let y3 = tch::no_grad(|| model.forward_t(&f["input"].squeeze_dim(1), false));
    assert!(y3.equal(&y));
}

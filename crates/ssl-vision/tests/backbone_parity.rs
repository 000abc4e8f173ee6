//! Backbones against torchvision's `resnet18` and timm's `VisionTransformer`:
//! the same state-dict keys and shapes, and the same outputs to 1e-4 when
//! both sides fill every weight with the same deterministic formula (so no
//! weight file needs shipping). Fixtures: `tools/golden/backbones.py`.

use ssl_vision::resnet::{ResNet, ResNetConfig};
use ssl_vision::vit::{Vit, VitConfig};
use std::collections::HashMap;
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = format!("{}/tests/fixtures/{name}.safetensors", env!("CARGO_MANIFEST_DIR"));
    Tensor::read_safetensors(&path).expect("reading a backbone fixture").into_iter().collect()
}

fn keys(name: &str) -> Vec<(String, Vec<i64>)> {
    let path = format!("{}/tests/fixtures/{name}_keys.json", env!("CARGO_MANIFEST_DIR"));
    let v: Vec<(String, Vec<i64>, String)> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.into_iter().map(|(k, s, _)| (k, s)).collect()
}

/// The fill of `tools/golden/backbones.py`, computed in f64.
fn fill(vs: &nn::VarStore) {
    for (name, t) in vs.variables() {
        if t.kind() != Kind::Float {
            continue;
        }
        let o = (name.bytes().map(|b| b as u64).sum::<u64>() % 1000) as f64;
        let shape = t.size();
        let n = t.numel();
        let fan_in = if shape.len() >= 2 { n as f64 / shape[0] as f64 } else { 1.0 };
        let data: Vec<f32> = (0..n)
            .map(|i| {
                let base = (0.61 * i as f64 + 0.37 * o).sin();
                let v = if name.ends_with("running_var") {
                    1.0 + 0.5 * base.abs()
                } else if name.ends_with("running_mean") {
                    0.1 * base
                } else if shape.len() >= 2 {
                    base * (6.0 / fan_in).sqrt()
                } else if name.ends_with("weight") {
                    1.0 + 0.1 * base
                } else {
                    0.1 * base
                };
                v as f32
            })
            .collect();
        tch::no_grad(|| t.shallow_clone().copy_(&Tensor::from_slice(&data).reshape(&shape)));
    }
}

fn assert_keys(vs: &nn::VarStore, want: &[(String, Vec<i64>)]) {
    let vars = vs.variables();
    assert_eq!(vars.len(), want.len(), "number of state-dict entries");
    for (k, shape) in want {
        let t = vars.get(k).unwrap_or_else(|| panic!("missing key {k}"));
        assert_eq!(&t.size(), shape, "{k}");
    }
}

fn assert_close(name: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.size(), want.size(), "{name}: shape");
    let diff = (got - want).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "{name}: max difference {diff:e}");
}

#[test]
fn resnet18_matches_torchvision() {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = ResNet::new(&vs.root(), &ResNetConfig::resnet18());
    let fc = nn::linear(vs.root() / "fc", 512, 1000, Default::default());
    assert_keys(&vs, &keys("resnet18"));
    fill(&vs);
    let fx = fixture("resnet18");
    let features = tch::no_grad(|| net.forward_t(&fx["input"], false));
    assert_close("features", &features, &fx["features"]);
    assert_close("logits", &features.apply(&fc), &fx["logits"]);
}

#[test]
fn vit_matches_timm() {
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = VitConfig {
        image_size: 32,
        patch_size: 4,
        in_channels: 3,
        dim: 48,
        depth: 2,
        heads: 3,
        mlp_ratio: 4.0,
        fixed_pos_embed: false,
        image_width: None,
        pool: Default::default(),
    };
    let vit = Vit::new(&vs.root(), &cfg);
    let head = nn::linear(vs.root() / "head", 48, 10, Default::default());
    assert_keys(&vs, &keys("vit"));
    fill(&vs);
    let fx = fixture("vit");
    let tokens = tch::no_grad(|| vit.forward_tokens(&fx["input"]));
    assert_close("tokens", &tokens, &fx["tokens"]);
    let features = tch::no_grad(|| vit.forward_t(&fx["input"], false));
    assert_close("features", &features, &fx["features"]);
    assert_close("logits", &head.forward(&features), &fx["logits"]);
}

#[test]
fn weights_round_trip_through_safetensors_with_pytorch_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet18.safetensors");
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = ResNet::new(&vs.root(), &ResNetConfig::resnet18());
    fill(&vs);
    vs.save(&path).unwrap();
    let names: Vec<String> = Tensor::read_safetensors(&path).unwrap().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"layer4.1.bn2.num_batches_tracked".to_string()));
    let mut other = nn::VarStore::new(Device::Cpu);
    let _ = ResNet::new(&other.root(), &ResNetConfig::resnet18());
    ssl_core::checkpoint::load_weights(&path, &mut other).unwrap();
    let a = vs.variables()["layer3.0.conv1.weight"].copy();
    assert!(a.equal(&other.variables()["layer3.0.conv1.weight"]));
}

//! Backbones against torchvision's `resnet18` and timm's `VisionTransformer`:
//! the same state-dict keys and shapes, and the same outputs to 1e-4 when
//! both sides fill every weight with the same deterministic formula (so no
//! weight file needs shipping). Fixtures: `tools/golden/backbones.py`.

use ssl_vision::resnet::{ResNet, ResNetConfig};
use ssl_vision::vit::Vit;
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Tensor};

mod common;
use common::{assert_close, fill, fixture, keys, timm_vit};

fn assert_keys(vs: &nn::VarStore, want: &[(String, Vec<i64>)]) {
    let vars = vs.variables();
    assert_eq!(vars.len(), want.len(), "number of state-dict entries");
    for (k, shape) in want {
        let t = vars.get(k).unwrap_or_else(|| panic!("missing key {k}"));
        assert_eq!(&t.size(), shape, "{k}");
    }
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
    let cfg = timm_vit(2, 0.0);
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

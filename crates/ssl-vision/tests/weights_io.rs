//! Weights in and out against torchvision's and timm's files: `--init`
//! reads a timm ViT file written by timm (`tools/golden/backbone_io.py`)
//! and a torchvision ResNet-18 file with every key, shape and dtype of
//! torchvision's state dict (`fc.*` and `num_batches_tracked` included;
//! written here, since the real file is 45 MB, with the fill of
//! `tools/golden/backbones.py`), and the method's features then equal the
//! reference library's to 1e-4. The export (`backbone.safetensors`) has
//! exactly the reference keys less the classifier, and its TorchScript
//! trace reproduces the features. Loading both exports in torchvision and
//! timm is `tools/golden/check_backbone_export.py`'s job.

use ssl_vision::augment::ViewAugment;
use ssl_vision::backbone::BackboneConfig;
use ssl_vision::resnet::{ResNet, ResNetConfig};
use ssl_vision::weights::{export_backbone, init_backbone};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::nn;
use tch::{Device, Kind, Tensor};

mod common;
use common::{assert_close, fill, fixture, timm_vit};

/// `[key, shape, dtype]` of a reference state dict, as the fixtures list it.
fn reference_keys(name: &str) -> Vec<(String, Vec<i64>, String)> {
    let path = format!("{}/tests/fixtures/{name}_keys.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Float => "float32",
        Kind::Int64 => "int64",
        other => panic!("unexpected kind {other:?}"),
    }
}

/// A torchvision ResNet-18 state dict (with `fc`), filled by the formula,
/// as a safetensors file; checked against torchvision's key list.
fn torchvision_file(dir: &Path) -> PathBuf {
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = ResNet::new(&vs.root(), &ResNetConfig::resnet18());
    let _ = nn::linear(vs.root() / "fc", 512, 1000, Default::default());
    fill(&vs);
    let named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    let got: BTreeMap<String, (Vec<i64>, String)> =
        named.iter().map(|(k, t)| (k.clone(), (t.size(), kind_name(t.kind()).to_string()))).collect();
    let want: BTreeMap<String, (Vec<i64>, String)> =
        reference_keys("resnet18").into_iter().map(|(k, s, d)| (k, (s, d))).collect();
    assert_eq!(got, want, "the file holds torchvision's state dict");
    let path = dir.join("resnet18-torchvision.safetensors");
    Tensor::write_safetensors(&named, &path).unwrap();
    path
}

fn timm_file() -> PathBuf {
    PathBuf::from(format!("{}/tests/fixtures/timm_vit_init.safetensors", env!("CARGO_MANIFEST_DIR")))
}

fn build(method: &str, cfg: &BackboneConfig) -> (nn::VarStore, Box<dyn ssl_core::method::Method>) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let (m, _) = ssl_vision::methods::build(method, &vs, cfg, None, &[]).unwrap();
    (vs, m)
}

#[test]
fn a_torchvision_resnet18_file_starts_every_copy_of_the_backbone() {
    let dir = tempfile::tempdir().unwrap();
    let file = torchvision_file(dir.path());
    let cfg: BackboneConfig = ResNetConfig::resnet18().into();
    let fx = fixture("resnet18");
    for method in ["simclr", "byol"] {
        let (vs, m) = build(method, &cfg);
        let r = init_backbone(&file, &vs, &cfg).unwrap();
        assert_eq!(r.loaded, 120, "{method}: ResNet-18's weights, BatchNorm statistics and counters");
        assert_eq!(r.ignored, ["fc.bias", "fc.weight"], "{method}");
        let features = tch::no_grad(|| m.features(&fx["input"]));
        assert_close(&format!("{method} features after --init"), &features, &fx["features"]);
        if method == "byol" {
            assert_eq!(r.into, ["online.backbone.", "target.backbone."]);
            let v = vs.variables();
            assert!(v["target.backbone.layer4.1.bn2.running_var"]
                .equal(&v["online.backbone.layer4.1.bn2.running_var"]));
        }
    }
}

#[test]
fn a_timm_vit_file_starts_a_vit_method_and_mae() {
    let cfg: BackboneConfig = timm_vit(2, 0.0).into();
    let fx = fixture("vit");
    for method in ["simclr", "mae"] {
        let (vs, m) = build(method, &cfg);
        let r = init_backbone(&timm_file(), &vs, &cfg).unwrap();
        assert_eq!(r.ignored, ["head.bias", "head.weight"], "{method}");
        let features = tch::no_grad(|| m.features(&fx["input"]));
        assert_close(&format!("{method} features after --init"), &features, &fx["features"]);
    }
}

#[test]
fn files_for_another_architecture_or_truncated_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let resnet: BackboneConfig = ResNetConfig::resnet18().into();
    let (vs, _) = build("simclr", &resnet);
    let before = vs.variables()["backbone.conv1.weight"].copy();
    let e = init_backbone(&timm_file(), &vs, &resnet).unwrap_err().to_string();
    for part in
        ["timm_vit_init.safetensors", "missing 100: `bn1.bias`", "unexpected 30: `blocks.0.attn.proj.bias`"]
    {
        assert!(e.contains(part), "`{part}` not in: {e}");
    }
    assert!(vs.variables()["backbone.conv1.weight"].equal(&before), "nothing is loaded on a mismatch");
    // The CIFAR stem (3x3 conv1, 1 channel) against ImageNet's 7x7 file.
    let cifar: BackboneConfig = ResNetConfig::resnet18_cifar().with_in_channels(1).into();
    let (vs, _) = build("simclr", &cifar);
    let e = init_backbone(&torchvision_file(dir.path()), &vs, &cifar).unwrap_err().to_string();
    assert!(
        e.contains("mis-shaped 1: `conv1.weight` is [64, 3, 7, 7], the encoder's is [64, 1, 3, 3]"),
        "{e}"
    );
    let bytes = std::fs::read(timm_file()).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let vit: BackboneConfig = timm_vit(2, 0.0).into();
    let (vs, _) = build("simclr", &vit);
    let e = init_backbone(&cut, &vs, &vit).unwrap_err().to_string();
    assert!(e.contains("cut.safetensors") && e.contains("not a readable safetensors file"), "{e}");
}

/// Exports `method`'s backbone after `--init` from `file`; returns the
/// export's names, shapes and dtypes, and checks the TorchScript trace.
fn export(
    method: &str,
    cfg: &BackboneConfig,
    file: &Path,
    input: &Tensor,
    want: &Tensor,
) -> BTreeMap<String, (Vec<i64>, String)> {
    let dir = tempfile::tempdir().unwrap();
    let (vs, _) = build(method, cfg);
    init_backbone(file, &vs, cfg).unwrap();
    export_backbone(&vs, cfg, &ViewAugment::digits(32), input, dir.path()).unwrap();
    let check: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(dir.path().join("check_features.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    assert!(check["input"].equal(input));
    assert_close(&format!("{method}: check_features"), &check["features"], want);
    let traced = tch::CModule::load(dir.path().join("backbone.pt")).unwrap();
    let out = tch::no_grad(|| traced.forward_ts(&[input]).unwrap());
    assert_close(&format!("{method}: backbone.pt"), &out, want);
    // The trace takes another batch size.
    let one = tch::no_grad(|| traced.forward_ts(&[input.narrow(0, 1, 1)]).unwrap());
    assert_close(&format!("{method}: backbone.pt on one image"), &one, &want.narrow(0, 1, 1));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("backbone.json")).unwrap()).unwrap();
    assert_eq!(meta["input_shape"], serde_json::json!(&input.size()[1..]));
    let named = Tensor::read_safetensors(dir.path().join("backbone.safetensors")).unwrap();
    // Round trip: the export starts another method the same way.
    let (vs2, m2) = build("barlow-twins", cfg);
    init_backbone(&dir.path().join("backbone.safetensors"), &vs2, cfg).unwrap();
    if method != "mae" {
        assert_close("re-init from the export", &tch::no_grad(|| m2.features(input)), want);
    }
    named.into_iter().map(|(k, t)| (k, (t.size(), kind_name(t.kind()).to_string()))).collect()
}

#[test]
fn exports_have_the_reference_keys_without_the_classifier() {
    let dir = tempfile::tempdir().unwrap();
    let resnet: BackboneConfig = ResNetConfig::resnet18().into();
    let fx = fixture("resnet18");
    let got = export("byol", &resnet, &torchvision_file(dir.path()), &fx["input"], &fx["features"]);
    let want: BTreeMap<String, (Vec<i64>, String)> = reference_keys("resnet18")
        .into_iter()
        .filter(|(k, _, _)| !k.starts_with("fc."))
        .map(|(k, s, d)| (k, (s, d)))
        .collect();
    assert_eq!(got, want, "torchvision's keys, shapes and dtypes less fc");
    let vit: BackboneConfig = timm_vit(2, 0.0).into();
    let fx = fixture("vit");
    let got = export("moco-v3", &vit, &timm_file(), &fx["input"], &fx["features"]);
    let want: BTreeMap<String, (Vec<i64>, String)> = reference_keys("vit")
        .into_iter()
        .filter(|(k, _, _)| !k.starts_with("head."))
        .map(|(k, s, d)| (k, (s, d)))
        .collect();
    assert_eq!(got, want, "timm's keys, shapes and dtypes less head");
}

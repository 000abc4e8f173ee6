//! Backbone weights in and out under torchvision's and timm's names:
//! `--init` from a published ResNet or ViT safetensors file (or an ssl-rs
//! run's), and `backbone.safetensors`, the backbone the run evaluated
//! alone (the online copy, or DINO's teacher: `evaluated_prefix`), which
//! `torchvision.models.resnet18()` (with `fc = nn.Identity()`) or timm's
//! `VisionTransformer(num_classes=0)` loads with `strict=True`
//! (`tools/golden/check_backbone_export.py` checks the features to 1e-4).

use crate::augment::ViewAugment;
use crate::backbone::{Backbone, BackboneConfig};
use crate::Result;
use ssl_core::weights::{self, EncoderKeys, InitReport, KeyRules};
use std::path::Path;
use tch::nn;
use tch::{Device, Tensor};

/// The backbone's state-dict names and shapes (built once on the CPU to
/// read them off).
pub fn backbone_keys(cfg: &BackboneConfig) -> EncoderKeys {
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = Backbone::new(&vs.root(), cfg);
    weights::keys_of(&vs)
}

/// What a published file may differ in: it may hold a classifier
/// (torchvision's `fc.*`, timm's `head.*`), left out, and may lack
/// BatchNorm's `num_batches_tracked` counters (timm's ResNets, older
/// files), as PyTorch's BatchNorm allows.
pub const KEY_RULES: KeyRules = KeyRules {
    ignore_extra: |k| k.starts_with("fc.") || k.starts_with("head."),
    may_be_missing: |k| k.ends_with(".num_batches_tracked"),
};

/// Loads a torchvision ResNet, timm ViT or ssl-rs file into every copy of
/// the backbone in a method's var store (the online branch and its momentum
/// target alike), before training; see [`ssl_core::weights::init_encoder`]
/// for the rules. A file for another architecture or input size fails with
/// the missing, mis-shaped and unexpected names.
pub fn init_backbone(file: &Path, method_vs: &nn::VarStore, cfg: &BackboneConfig) -> Result<InitReport> {
    init_backbone_under(file, None, method_vs, cfg)
}

/// [`init_backbone`] from the tensors under `prefix` in the file when it is
/// given (`target.backbone.`: BYOL's or MoCo's momentum copy,
/// `student.backbone.`: DINO's student, in a run's `model.safetensors`);
/// see [`ssl_core::weights::init_encoder_under`].
pub fn init_backbone_under(
    file: &Path,
    prefix: Option<&str>,
    method_vs: &nn::VarStore,
    cfg: &BackboneConfig,
) -> Result<InitReport> {
    Ok(weights::init_encoder_under(file, prefix, method_vs, &backbone_keys(cfg), KEY_RULES)?)
}

/// The tensors of the backbone the method evaluates (DINO's teacher,
/// otherwise the online copy: [`weights::evaluated_prefix`]) under the
/// reference library's names, on the CPU: a ResNet's as torchvision's (with BatchNorm's
/// `num_batches_tracked`, which the backbone keeps but does not advance:
/// PyTorch reads it only when BatchNorm's momentum is `None`), a ViT's as
/// timm's.
pub fn backbone_tensors(method_vs: &nn::VarStore, cfg: &BackboneConfig) -> Result<Vec<(String, Tensor)>> {
    let keys = backbone_keys(cfg);
    let prefix = weights::evaluated_prefix(method_vs, &keys)?;
    Ok(weights::encoder_tensors(method_vs, &keys, &prefix)?)
}

/// Which library's names a backbone export follows.
pub fn reference_library(cfg: &BackboneConfig) -> &'static str {
    match cfg {
        BackboneConfig::ResNet(_) => "torchvision",
        BackboneConfig::Vit(_) => "timm",
    }
}

/// Writes the backbone the run evaluated (the copy `Method::features`
/// uses: DINO's teacher, else the online one) into `dir` with
/// [`ssl_core::weights::export_encoder`]: `backbone.safetensors`
/// ([`backbone_tensors`]), `backbone.pt` (TorchScript, which takes any batch
/// of `sample`'s image size: a ViT's position embeddings are traced for
/// that size), `check_features.safetensors` (`sample`, after the
/// evaluation transform, and its features) and `backbone.json` (the
/// library, the architecture, the input shape, and `eval`, the evaluation
/// transform, which `embed-vision` applies), which
/// `tools/golden/check_backbone_export.py` reads.
pub fn export_backbone(
    method_vs: &nn::VarStore,
    cfg: &BackboneConfig,
    eval: &ViewAugment,
    sample: &Tensor,
    dir: &Path,
) -> Result<()> {
    let named = backbone_tensors(method_vs, cfg)?;
    let meta = serde_json::json!({
        "modality": "vision", "library": reference_library(cfg), "backbone": cfg, "eval_transform": eval,
    });
    Ok(weights::export_encoder(&named, |p| Backbone::new(p, cfg), sample, dir, meta)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resnet::ResNetConfig;

    fn cfg() -> BackboneConfig {
        ResNetConfig::resnet18_cifar().with_width(4).with_in_channels(1).into()
    }

    #[test]
    fn every_method_exports_its_trained_backbone() {
        let keys = backbone_keys(&cfg());
        for (method, want) in [
            ("simclr", "backbone."),
            ("byol", "online.backbone."),
            ("moco-v2", "online.backbone."),
            ("barlow-twins", "online.backbone."),
            ("dino", "teacher.backbone."),
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            let _ = crate::methods::build(method, &vs, &cfg(), None, &[]).unwrap();
            assert_eq!(weights::evaluated_prefix(&vs, &keys).unwrap(), want, "{method}");
            let named = backbone_tensors(&vs, &cfg()).unwrap();
            let conv = &named.iter().find(|(k, _)| k == "conv1.weight").unwrap().1;
            assert!(conv.equal(&vs.variables()[&format!("{want}conv1.weight")]), "{method}");
            assert_eq!(named.len(), keys.len());
        }
    }

    /// What is exported (and so embedded) is the copy `features` evaluates,
    /// so that `backbone.safetensors` gives the report's figures: with
    /// every copy of the backbone made to differ, the exported tensors
    /// reproduce the method's own features (DINO's teacher, not its
    /// student, whose export this test was written against).
    #[test]
    fn every_method_exports_the_copy_it_evaluates() {
        use tch::nn::ModuleT as _;
        let x = Tensor::randn([2, 1, 16, 16], (tch::Kind::Float, Device::Cpu));
        for &method in crate::methods::METHODS.iter().filter(|m| **m != "mae") {
            tch::manual_seed(2);
            let vs = nn::VarStore::new(Device::Cpu);
            let (m, _) = crate::methods::build(method, &vs, &cfg(), None, &[]).unwrap();
            // Momentum copies start equal to the online one; make each
            // tensor differ (positive factors keep BatchNorm's variances
            // positive).
            tch::no_grad(|| {
                for (_, t) in vs.variables() {
                    if t.is_floating_point() {
                        t.shallow_clone().copy_(&(&t * (t.rand_like() * 0.5 + 0.75)));
                    }
                }
            });
            let want = m.features(&x);
            let export = nn::VarStore::new(Device::Cpu);
            let backbone = Backbone::new(&export.root(), &cfg());
            let vars = export.variables();
            tch::no_grad(|| {
                for (k, t) in backbone_tensors(&vs, &cfg()).unwrap() {
                    vars[&k].shallow_clone().copy_(&t);
                }
            });
            let got = backbone.forward_t(&x, false);
            assert!(got.allclose(&want, 1e-5, 1e-6, false), "{method}: the export is not the evaluated copy");
        }
    }
}

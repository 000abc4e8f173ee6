//! The vision methods by their command-line names, each with a training
//! recipe (optimizer, learning rate per 256 samples, weight decay) sized for
//! short runs on small data sets.

use crate::backbone::BackboneConfig;
use crate::byol::{Byol, ByolConfig, SimSiam, SimSiamConfig};
use crate::dino::{Dino, DinoConfig};
use crate::mae::{Mae, MaeConfig};
use crate::moco::{MocoV2, MocoV2Config, MocoV3, MocoV3Config};
use crate::redundancy::{Redundancy, RedundancyConfig};
use crate::simclr::{SimClr, SimClrConfig};
use crate::{Error, Result};
use serde::Serialize;
use ssl_core::config::{self, Override};
use ssl_core::method::Method;
use ssl_core::optim::{OptimizerConfig, OptimizerKind};
use tch::nn;

/// Every method `train-vision --method` accepts.
pub const METHODS: &[&str] =
    &["simclr", "moco-v2", "moco-v3", "byol", "simsiam", "barlow-twins", "vicreg", "mae", "dino"];

/// The augmentation preset ([`crate::augment::ViewAugment::preset`]) of a
/// method's paper, for colour images: SimSiam trains on MoCo v2's views;
/// MoCo v3, Barlow Twins and VICReg on BYOL's asymmetric pair.
pub fn default_augment(method: &str) -> &'static str {
    match method {
        "moco-v2" | "simsiam" => "moco-v2",
        "byol" | "moco-v3" | "barlow-twins" | "vicreg" | "dino" => "byol",
        "mae" => "mae",
        _ => "simclr",
    }
}

/// The backbone a method uses unless told otherwise (`small`: the
/// quarter-width ResNet-18; `vit-mini`: a 96-wide, 6-block ViT). MoCo v3
/// trains the `small` ResNet, as solo-learn's CIFAR recipe trains a
/// ResNet-18: on the bundled digits its ViT reached 51% kNN on the
/// validation split, the ResNet 82% (`docs/results.md`).
pub fn default_backbone(method: &str) -> &'static str {
    match method {
        "mae" => "vit-mini",
        _ => "small",
    }
}

/// How a method is trained by default. The values were picked on the
/// bundled MNIST-5k set (see `docs/results.md`); the paper's value is given
/// where it differs.
#[derive(Clone, Debug, Serialize)]
pub struct Recipe {
    /// Epochs (the non-contrastive methods need more to get going).
    pub epochs: usize,
    /// `lars` (lightly's: trust coefficient 0.001), `lars-clip`
    /// (solo-learn's: 0.02, ratio clipped at the learning rate), `sgd` or
    /// `adamw`.
    pub optimizer: &'static str,
    /// Peak learning rate for a batch of 256 (scaled linearly).
    pub lr_per_256: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Temperature, for the contrastive methods.
    pub temperature: Option<f64>,
    /// Variables that keep the peak learning rate (SimSiam's predictor, as
    /// the paper does).
    pub fixed_lr_prefixes: &'static [&'static str],
    /// Batch size (the learning rate scales with it).
    pub batch_size: usize,
    /// Epochs of linear learning-rate warmup.
    pub warmup_epochs: usize,
}

/// The default recipe of a method.
pub fn recipe(method: &str) -> Result<Recipe> {
    let r = |epochs, optimizer, lr_per_256, weight_decay, temperature| Recipe {
        epochs,
        optimizer,
        lr_per_256,
        weight_decay,
        temperature,
        fixed_lr_prefixes: &[],
        batch_size: 256,
        warmup_epochs: 2,
    };
    Ok(match method {
        // Paper (CIFAR): LARS 1.0-1.5 per 256 at T = 0.5 for 1000 epochs.
        "simclr" => r(15, "lars", 0.6, 1e-6, Some(0.2)),
        "moco-v2" => r(30, "sgd", 0.06, 5e-4, Some(0.2)),
        // Paper: LARS 0.2 per 256. Base momentum 0.9 (in `build`). On the
        // validation split 100 epochs beat 50 by 15 points of kNN (91.4%
        // against 76.2%, SimCLR's default 80.2%; docs/results.md).
        "byol" => r(100, "lars", 0.8, 1.5e-6, None),
        // Paper: SGD 0.05 per 256, weight decay 1e-4, fixed predictor lr.
        // On the bundled digits SGD at 0.05-0.5 collapses partially (kNN
        // falls below random init); BYOL's LARS recipe does not. 30 epochs
        // tied random init on kNN over 3 seeds; on the validation split 60
        // beat it by 8 points and 100 by 21 (77.8% kNN, SimCLR's default
        // 80.2%). 100 epochs left one test seed 15 points below SimCLR; on
        // seed 1's validation split, 150 epochs beat 100 by 17 points of
        // kNN (83.1% against 66.1%), on seed 0's they lost 7 (71.0% against
        // 77.8%); the test mean rose from 78.7% to 82.6%. With 2 warmup
        // epochs the embedding's rank fell from about 55 to 14-24 in the
        // first 10 epochs of all five runs; 10 warmup epochs (solo-learn's)
        // kept it above 31 through epoch 10 (it later fell to 24-25),
        // raised seed 0's validation kNN from 71.0% to 88.9%, and tied on
        // seed 1's (82.8% against 83.1%; docs/results.md).
        "simsiam" => Recipe {
            fixed_lr_prefixes: &["predictor."],
            warmup_epochs: 10,
            ..r(150, "lars", 0.8, 1.5e-6, None)
        },
        // Paper: LARS 0.2 per 256 for the weights.
        "barlow-twins" => r(15, "lars", 0.4, 1.5e-6, None),
        "vicreg" => r(15, "lars", 0.3, 1e-6, None),
        // Paper (ResNet-50): LARS; (ViT) AdamW 1.5e-4 per 256. Chosen on
        // the validation split with the `small` ResNet and base momentum
        // 0.9: 30 epochs of SimCLR's LARS (docs/results.md). On a ViT the
        // earlier recipe was `--optimizer adamw --lr 1e-3 --weight-decay
        // 0.1 --epochs 15`.
        "moco-v3" => r(30, "lars", 0.6, 1e-6, Some(0.2)),
        // Paper: AdamW 1.5e-4 per 256 for 1600 epochs. On the 4000 digits
        // MAE needs steps: batches of 64 for 40 epochs beat 15
        // epochs of 256 on a validation split by 12 points of kNN and 4 of
        // linear probe, and 100 epochs beat 40 by 7 points of
        // linear probe and 4 of fine-tuning, where 40 only tied fine-tuning
        // from random initialisation (docs/results.md).
        "mae" => Recipe { batch_size: 64, ..r(100, "adamw", 3e-3, 0.05, None) },
        // Paper (ViT-S): AdamW 5e-4 per 256, weight decay 0.04 to 0.4;
        // lightly's CIFAR-10 benchmark (ResNet): SGD 0.06 per 128, weight
        // decay 5e-4. On the 4000 digits DINO needs many steps: batches of
        // 64 (62 steps per epoch) for 20 epochs; LARS at 0.3 per 256 and
        // batches of 256 stayed at a uniform teacher (docs/results.md).
        "dino" => Recipe { batch_size: 64, ..r(20, "sgd", 0.24, 5e-4, None) },
        other => return Err(unknown(other)),
    })
}

fn unknown(name: &str) -> Error {
    Error::Config(format!("unknown method `{name}`; expected one of: {}", METHODS.join(", ")))
}

/// The optimizer config of a recipe for `batch_size`, with optional
/// overrides.
pub fn optimizer(
    recipe: &Recipe,
    batch_size: usize,
    name: Option<&str>,
    lr: Option<f64>,
    wd: Option<f64>,
) -> Result<OptimizerConfig> {
    let name = name.unwrap_or(recipe.optimizer);
    let lr = lr.unwrap_or(recipe.lr_per_256 * batch_size as f64 / 256.0);
    let wd = wd.unwrap_or(recipe.weight_decay);
    let mut cfg = match name {
        "lars" => OptimizerConfig::lars(lr, wd),
        // solo-learn's LARS: trust coefficient 0.02, ratio clipped at lr.
        "lars-clip" => OptimizerConfig {
            kind: OptimizerKind::Lars { momentum: 0.9, trust_coefficient: 0.02, eps: 1e-8, clip_lr: true },
            ..OptimizerConfig::lars(lr, wd)
        },
        "sgd" => OptimizerConfig::sgd(lr, wd),
        "adamw" => OptimizerConfig::adamw(lr, wd),
        o => {
            return Err(Error::Config(format!(
                "unknown optimizer `{o}`; expected lars, lars-clip, sgd or adamw"
            )))
        }
    };
    cfg.fixed_lr_prefixes = recipe.fixed_lr_prefixes.iter().map(|p| p.to_string()).collect();
    Ok(cfg)
}

/// Builds a method in `vs` on `backbone`; head widths scale with the
/// backbone's feature width (DINO's are fixed), then `overrides` (`--set key=value`) replace
/// fields of the method's config. Returns the method and its resolved
/// config. A config that `overrides` made unbuildable (heads that do not
/// divide a width, a negative width) is an error naming them.
pub fn build(
    name: &str,
    vs: &nn::VarStore,
    backbone: &BackboneConfig,
    temperature: Option<f64>,
    overrides: &[Override],
) -> Result<(Box<dyn Method>, serde_json::Value)> {
    config::build_with(&format!("{name}'s model"), overrides, || {
        build_unchecked(name, vs, backbone, temperature, overrides)
    })
}

fn build_unchecked(
    name: &str,
    vs: &nn::VarStore,
    backbone: &BackboneConfig,
    temperature: Option<f64>,
    overrides: &[Override],
) -> Result<(Box<dyn Method>, serde_json::Value)> {
    let f = backbone.feature_dim();
    let b = backbone.clone();
    let t = temperature.or(recipe(name)?.temperature);
    let what = format!("{name}'s config");
    Ok(match name {
        "simclr" => {
            let cfg = config::apply(
                SimClrConfig {
                    backbone: b,
                    head_hidden: 4 * f,
                    head_out: 128,
                    temperature: t.unwrap_or(0.5),
                },
                overrides,
                &what,
            )?;
            (Box::new(SimClr::new(&vs.root(), &cfg)), json(&cfg))
        }
        "moco-v2" => {
            let cfg = config::apply(
                MocoV2Config { hidden: 4 * f, temperature: t.unwrap_or(0.2), ..MocoV2Config::new(b) },
                overrides,
                &what,
            )?;
            (Box::new(MocoV2::new(vs, &cfg)?), json(&cfg))
        }
        "byol" => {
            let cfg = config::apply(
                ByolConfig {
                    hidden: 8 * f,
                    out: 128,
                    // Short runs: a target that follows within about ten
                    // steps (the paper's 0.99 to 0.996 is for hundreds of
                    // epochs); chosen on the validation split
                    // (docs/results.md).
                    base_momentum: 0.9,
                    ..ByolConfig::new(b)
                },
                overrides,
                &what,
            )?;
            (Box::new(Byol::new(vs, &cfg)?), json(&cfg))
        }
        "simsiam" => {
            let cfg = config::apply(
                SimSiamConfig { out: 4 * f, pred_hidden: f, ..SimSiamConfig::new(b) },
                overrides,
                &what,
            )?;
            (Box::new(SimSiam::new(&vs.root(), &cfg)), json(&cfg))
        }
        "barlow-twins" => {
            let cfg = config::apply(RedundancyConfig::barlow_twins(b, 8 * f), overrides, &what)?;
            (Box::new(Redundancy::barlow_twins(&vs.root(), &cfg)), json(&cfg))
        }
        "vicreg" => {
            let cfg = config::apply(RedundancyConfig::vicreg(b, 8 * f), overrides, &what)?;
            (Box::new(Redundancy::vicreg(&vs.root(), &cfg)), json(&cfg))
        }
        "moco-v3" => {
            let cfg = config::apply(
                MocoV3Config {
                    hidden: 8 * f,
                    out: 128,
                    temperature: t.unwrap_or(0.2),
                    // Short runs on a ResNet: a key encoder that follows
                    // within about ten steps beat the paper's 0.99 by 5
                    // points of kNN on the validation split at 30 epochs.
                    base_momentum: if matches!(b, BackboneConfig::Vit(_)) { 0.99 } else { 0.9 },
                    ..MocoV3Config::new(b)
                },
                overrides,
                &what,
            )?;
            (Box::new(MocoV3::new(vs, &cfg)?), json(&cfg))
        }
        "mae" => {
            let BackboneConfig::Vit(encoder) = b else {
                return Err(Error::Config(
                    "mae needs a ViT backbone (vit-mini, vit-tiny or vit-small)".into(),
                ));
            };
            let cfg = config::apply(MaeConfig::light(encoder), overrides, &what)?;
            (Box::new(Mae::new(&vs.root(), &cfg)), json(&cfg))
        }
        "dino" => {
            let cfg = config::apply(
                DinoConfig {
                    // lightly's CIFAR-10 benchmark head: one hidden layer
                    // of 2048 with BatchNorm, bottleneck 256, 2048
                    // prototypes, teacher temperature 0.04 throughout.
                    hidden: 2048,
                    bottleneck: 256,
                    head_layers: 2,
                    head_batch_norm: true,
                    out: 2048,
                    warmup_teacher_temp: 0.04,
                    teacher_temp: 0.04,
                    // Short runs: the teacher must move within about a
                    // thousand steps (the paper's 0.996 is for 100-800 epochs).
                    base_momentum: 0.99,
                    ..DinoConfig::new(b)
                },
                overrides,
                &what,
            )?;
            (Box::new(Dino::new(vs, &cfg)?), json(&cfg))
        }
        other => return Err(unknown(other)),
    })
}

/// Whether a method takes local crops (multi-crop) besides its two views:
/// DINO does; the others train on two views.
pub fn takes_local_crops(method: &str) -> bool {
    method == "dino"
}

/// Local crops a method trains on by default for views of `image_size`
/// pixels: DINO's 6 (the paper's ImageNet recipe and lightly's default)
/// for views of 64 pixels or more; none below, as solo-learn's and
/// lightly's CIFAR recipes (on the 28-pixel digits, 6 crops of 12 pixels
/// halved the speed and slowed learning: docs/results.md).
pub fn default_local_crops(method: &str, image_size: usize) -> usize {
    match method {
        "dino" if image_size >= 64 => 6,
        _ => 0,
    }
}

/// A config as JSON, for `config.json`.
fn json<T: Serialize>(cfg: &T) -> serde_json::Value {
    serde_json::to_value(cfg).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resnet::ResNetConfig;
    use crate::vit::VitConfig;
    use ssl_core::method::Batch;
    use ssl_core::optim::Optimizer;
    use tch::{Device, Kind, Tensor};

    fn tiny() -> BackboneConfig {
        ResNetConfig::resnet18_cifar().with_width(4).with_in_channels(1).into()
    }

    fn tiny_vit() -> BackboneConfig {
        VitConfig {
            image_size: 12,
            patch_size: 4,
            in_channels: 1,
            dim: 32,
            depth: 1,
            heads: 2,
            mlp_ratio: 2.0,
            fixed_pos_embed: true,
            image_width: None,
            pool: Default::default(),
            drop_path_rate: 0.0,
        }
        .into()
    }

    #[test]
    fn every_method_builds_steps_and_has_a_recipe() {
        tch::manual_seed(0);
        let x = Tensor::randn([16, 1, 12, 12], (Kind::Float, Device::Cpu));
        let batch = Batch { views: vec![x.shallow_clone(), (&x * 0.9 + 0.05).contiguous()], labels: None };
        for &name in METHODS {
            let vs = nn::VarStore::new(Device::Cpu);
            let backbone = if default_backbone(name).starts_with("vit") { tiny_vit() } else { tiny() };
            let (mut m, cfg) = build(name, &vs, &backbone, None, &[]).unwrap();
            assert_eq!(m.name(), name);
            assert!(cfg.get("backbone").or(cfg.get("encoder")).is_some(), "{name}: {cfg}");
            let r = recipe(name).unwrap();
            let mut opt = Optimizer::from_var_store(&optimizer(&r, 16, None, None, None).unwrap(), &vs);
            let loss = m.loss(&batch, true).unwrap().loss;
            assert!(loss.double_value(&[]).is_finite(), "{name}");
            loss.backward();
            opt.step(0.01);
            m.after_step(0, 10);
            assert_eq!(m.features(&x).size(), [16, 32], "{name}");
        }
        assert!(build("swav", &nn::VarStore::new(Device::Cpu), &tiny(), None, &[]).is_err());
        let err =
            build("mae", &nn::VarStore::new(Device::Cpu), &tiny(), None, &[]).err().unwrap().to_string();
        assert!(err.contains("mae needs a ViT"), "{err}");
        assert!(recipe("swav").unwrap_err().to_string().contains("simclr, moco-v2"));
    }

    /// Every two-view method's loss treats its views alike: swapping them
    /// leaves the loss unchanged (up to the order of float sums), which a
    /// loss that paired a view with itself, or symmetrised only one way,
    /// would not. Checked in f64 against the view-swapped batch and a
    /// batch whose second view is replaced, which must change it.
    #[test]
    fn two_view_losses_are_symmetric_in_their_views_and_use_both() {
        for name in ["simclr", "moco-v3", "byol", "simsiam", "barlow-twins", "vicreg"] {
            tch::manual_seed(4);
            let mut vs = nn::VarStore::new(Device::Cpu);
            let backbone = if default_backbone(name).starts_with("vit") { tiny_vit() } else { tiny() };
            let (m, _) = build(name, &vs, &backbone, None, &[]).unwrap();
            vs.double();
            let x = Tensor::randn([8, 1, 12, 12], (Kind::Double, Device::Cpu));
            let y = (x.flip([3]) * 0.8 + 0.1).contiguous();
            let loss = |a: &Tensor, b: &Tensor| {
                let batch = Batch { views: vec![a.shallow_clone(), b.shallow_clone()], labels: None };
                m.loss(&batch, true).unwrap().loss.double_value(&[])
            };
            let (ab, ba) = (loss(&x, &y), loss(&y, &x));
            assert!(
                (ab - ba).abs() <= 1e-9 * ab.abs().max(1.0),
                "{name}: {ab} with the views swapped is {ba}"
            );
            let other = loss(&x, &(x.flip([2]) * 0.5));
            assert!((other - ab).abs() > 1e-6, "{name}: the second view changes nothing ({ab} vs {other})");
        }
    }

    #[test]
    fn momentum_targets_are_not_trained_and_follow_the_online_branch() {
        // Base momentum at step 0: 0.9 for both on a ResNet.
        for (name, tau) in [("byol", 0.9), ("moco-v3", 0.9)] {
            momentum_target_follows_the_online_branch(name, tau);
        }
    }

    fn momentum_target_follows_the_online_branch(name: &str, tau: f64) {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let (mut m, _) = build(name, &vs, &tiny(), None, &[]).unwrap();
        let vars = vs.variables();
        let target: Vec<_> = vars.iter().filter(|(n, _)| n.starts_with("target.")).collect();
        assert!(!target.is_empty());
        assert!(target.iter().all(|(_, t)| !t.requires_grad()));
        let w = |n: &str| vars[n].detach().copy();
        let key = "backbone.conv1.weight";
        assert!(w(&format!("online.{key}")).equal(&w(&format!("target.{key}"))), "target starts as a copy");
        let x = Tensor::randn([8, 1, 12, 12], (Kind::Float, Device::Cpu));
        let batch = Batch { views: vec![x.shallow_clone(), x.flip([3])], labels: None };
        let mut opt = Optimizer::from_var_store(&OptimizerConfig::sgd(0.5, 0.0), &vs);
        let before = w(&format!("target.{key}"));
        let loss = m.loss(&batch, true).unwrap().loss;
        loss.backward();
        opt.step(0.5);
        assert!(before.equal(&w(&format!("target.{key}"))), "the optimizer must not touch the target");
        m.after_step(0, 100);
        let (online, target) = (w(&format!("online.{key}")), w(&format!("target.{key}")));
        // The target moves 1 - tau of the way.
        let expect = &before * tau + &online * (1.0 - tau);
        assert!((target - expect).abs().max().double_value(&[]) < 1e-6, "{name}");
    }

    #[test]
    fn moco_enqueues_the_keys_of_each_step() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = crate::moco::MocoV2Config {
            queue_size: 20,
            bn_splits: 2,
            ..crate::moco::MocoV2Config::new(tiny())
        };
        let mut m = crate::moco::MocoV2::new(&vs, &cfg).unwrap();
        let x = Tensor::randn([8, 1, 12, 12], (Kind::Float, Device::Cpu));
        let batch = Batch { views: vec![x.shallow_clone(), x.flip([3])], labels: None };
        let before = m.queue().copy();
        let norms = before.norm_scalaropt_dim(2.0, [1i64].as_slice(), false);
        assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-5, "the initial queue is normalised");
        for step in 0..3 {
            let loss = m.loss(&batch, true).unwrap().loss;
            assert!(loss.double_value(&[]).is_finite());
            m.after_step(step, 3);
        }
        let ptr = vs.variables()["queue_ptr"].int64_value(&[0]);
        assert_eq!(ptr, 24 % 20, "three batches of 8 wrap around a queue of 20");
        // Rows 0..4 were overwritten twice, 4..20 once: all differ from the start.
        let changed = before.ne_tensor(m.queue()).any_dim(1, false).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(changed, 20);
        // Evaluation-mode losses do not enqueue.
        let q = m.queue().copy();
        let _ = m.loss(&batch, false).unwrap();
        m.after_step(3, 3);
        assert!(q.equal(m.queue()));
    }
}

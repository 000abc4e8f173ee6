//! The anchor projects' published pretraining recipes, by name
//! (`train-vision --recipe solo-learn/cifar/byol`): solo-learn's CIFAR-10/100
//! and ImageNet-100 configs (`scripts/pretrain/{cifar,imagenet-100}/*.yaml`
//! at commit 9187ea3) and lightly's CIFAR-10 benchmark
//! (`docs/source/getting_started/benchmarks/cifar10_benchmark.py` at
//! e8d317f), in ssl-rs's terms: backbone, epochs, global batch, optimizer,
//! learning rate, weight decay, warmup, augmentation preset, multi-crop,
//! and the method's config fields (`--set`).
//!
//! Each recipe lists where ssl-rs differs from the source (`differences`);
//! `docs/recipes.md` gives the published accuracies beside them. The
//! recipes choose no data: pass `--data cifar10:DIR`, `cifar100:DIR` or
//! `folder:DIR --stream` for ImageNet-100.

use serde::Serialize;

/// One published recipe.
#[derive(Clone, Debug, Serialize)]
pub struct AnchorRecipe {
    /// `project/data/method`, e.g. `solo-learn/cifar/simclr`.
    pub name: &'static str,
    /// The file it mirrors.
    pub source: &'static str,
    /// The data it was published on.
    pub data: &'static str,
    /// `--method`.
    pub method: &'static str,
    /// `--backbone`.
    pub backbone: &'static str,
    /// `--stem` (ResNets).
    pub stem: &'static str,
    /// `--patch-size` (ViTs).
    pub patch_size: Option<u32>,
    /// `--image-size`.
    pub image_size: u32,
    /// `--epochs`.
    pub epochs: usize,
    /// `--batch-size` (global).
    pub batch_size: usize,
    /// `--optimizer`.
    pub optimizer: &'static str,
    /// The peak learning rate per 256 samples (`--lr` is this times the
    /// batch over 256, the batch of `--batch-size` if given).
    pub lr_per_256: f64,
    /// `--weight-decay`.
    pub weight_decay: f64,
    /// `--warmup-epochs`.
    pub warmup_epochs: usize,
    /// `--temperature`, for the contrastive methods.
    pub temperature: Option<f64>,
    /// `--augment`: the closest ssl-rs preset.
    pub augment: &'static str,
    /// `--local-crops`.
    pub local_crops: usize,
    /// `--set` overrides of the method's config.
    pub sets: &'static [&'static str],
    /// More overrides, applied after `sets` (a variant of another recipe).
    pub more_sets: &'static [&'static str],
    /// Where ssl-rs does not follow the source.
    pub differences: &'static str,
}

const SOLO_CIFAR: &str = "solo-learn scripts/pretrain/cifar/";
const SOLO_IN100: &str = "solo-learn scripts/pretrain/imagenet-100/";
const LIGHTLY: &str = "lightly docs/source/getting_started/benchmarks/cifar10_benchmark.py";

/// What every solo-learn recipe does differently.
const SOLO_COMMON: &str =
    "warmup starts at 0, not 3e-5; evaluation is ssl-rs's offline kNN and linear probe, \
                           not solo-learn's online linear classifier; BatchNorm is per rank unless --sync-bn";

#[allow(clippy::too_many_arguments)]
const fn solo(
    name: &'static str,
    source: &'static str,
    method: &'static str,
    optimizer: &'static str,
    lr_per_256: f64,
    weight_decay: f64,
    temperature: Option<f64>,
    augment: &'static str,
    sets: &'static [&'static str],
    differences: &'static str,
) -> AnchorRecipe {
    AnchorRecipe {
        name,
        source,
        data: "CIFAR-10 / CIFAR-100",
        method,
        backbone: "resnet18",
        stem: "cifar",
        patch_size: None,
        image_size: 32,
        epochs: 1000,
        batch_size: 256,
        optimizer,
        lr_per_256,
        weight_decay,
        warmup_epochs: 10,
        temperature,
        augment,
        local_crops: 0,
        sets,
        more_sets: &[],
        differences,
    }
}

/// A solo-learn CIFAR recipe moved to ImageNet-100 (400 epochs, 224 px,
/// ImageNet stem, 2 × 128 = 256 per step).
const fn in100(r: AnchorRecipe, name: &'static str, source: &'static str) -> AnchorRecipe {
    AnchorRecipe { name, source, data: "ImageNet-100", stem: "imagenet", image_size: 224, epochs: 400, ..r }
}

#[allow(clippy::too_many_arguments)]
const fn lightly(
    name: &'static str,
    method: &'static str,
    lr_per_256: f64,
    temperature: Option<f64>,
    augment: &'static str,
    sets: &'static [&'static str],
    differences: &'static str,
) -> AnchorRecipe {
    AnchorRecipe {
        data: "CIFAR-10",
        epochs: 200,
        batch_size: 512,
        warmup_epochs: 0,
        ..solo(name, LIGHTLY, method, "sgd", lr_per_256, 5e-4, temperature, augment, sets, differences)
    }
}

/// Every recipe, by name.
pub fn recipes() -> Vec<AnchorRecipe> {
    let simclr = solo(
        "solo-learn/cifar/simclr",
        SOLO_CIFAR,
        "simclr",
        "lars-clip",
        0.4,
        1e-4,
        Some(0.2),
        "simclr",
        &["head_hidden=2048", "head_out=256"],
        "no Gaussian blur at 32 px (solo-learn's symmetric views blur with p = 0.5)",
    );
    let moco = solo(
        "solo-learn/cifar/moco-v2",
        SOLO_CIFAR,
        "moco-v2",
        "sgd",
        0.3,
        1e-4,
        Some(0.2),
        "moco-v2",
        &["hidden=2048", "out=256", "queue_size=32768", "momentum=0.99"],
        "MoCo v2+'s key momentum rises from 0.99 to 0.999 there, stays 0.99 here; no blur at 32 px; \
         split BatchNorm (8 splits) instead of synchronised BatchNorm",
    );
    let byol = solo(
        "solo-learn/cifar/byol",
        SOLO_CIFAR,
        "byol",
        "lars-clip",
        1.0,
        1e-5,
        None,
        "byol",
        &["hidden=4096", "out=256", "base_momentum=0.99"],
        "",
    );
    let simsiam = solo(
        "solo-learn/cifar/simsiam",
        SOLO_CIFAR,
        "simsiam",
        "sgd",
        0.5,
        1e-5,
        None,
        "moco-v2",
        &["out=2048", "pred_hidden=512"],
        "the projector's hidden width equals its output (2048, as there); no blur at 32 px",
    );
    let barlow = solo(
        "solo-learn/cifar/barlow-twins",
        SOLO_CIFAR,
        "barlow-twins",
        "lars-clip",
        0.3,
        1e-4,
        None,
        "byol",
        &["width=2048", "lambda=0.0051"],
        "no scale_loss (0.1 there): LARS's trust ratio makes the step nearly independent of a constant \
         loss scale, except through weight decay",
    );
    let vicreg = solo(
        "solo-learn/cifar/vicreg",
        SOLO_CIFAR,
        "vicreg",
        "lars-clip",
        0.3,
        1e-4,
        None,
        "byol",
        &["width=2048"],
        "BYOL's asymmetric views instead of solo-learn's VICReg views (crop scale from 0.2, solarize p = 0.1 \
         on both)",
    );
    let mocov3 = solo(
        "solo-learn/cifar/moco-v3",
        SOLO_CIFAR,
        "moco-v3",
        "lars-clip",
        0.3,
        1e-6,
        Some(0.2),
        "byol",
        &["hidden=4096", "out=256", "base_momentum=0.99"],
        "",
    );
    let dino = solo(
        "solo-learn/cifar/dino",
        SOLO_CIFAR,
        "dino",
        "lars-clip",
        0.3,
        1e-6,
        None,
        "byol",
        &[
            "hidden=2048",
            "bottleneck=256",
            "out=4096",
            "head_layers=3",
            "head_batch_norm=false",
            "norm_last_layer=true",
            "base_momentum=0.9995",
            "teacher_temp=0.07",
            "warmup_teacher_temp=0.04",
            "warmup_teacher_temp_epochs=0",
        ],
        "",
    );
    let mae = AnchorRecipe {
        backbone: "vit-small",
        patch_size: Some(4),
        ..solo(
            "solo-learn/cifar/mae",
            SOLO_CIFAR,
            "mae",
            "adamw",
            2e-4,
            0.05,
            None,
            "mae",
            &[
                "decoder_dim=512",
                "decoder_depth=8",
                "decoder_heads=16",
                "mask_ratio=0.75",
                "norm_pix_loss=true",
            ],
            "AdamW's beta2 is 0.999 here, 0.95 there",
        )
    };
    let mut all = vec![
        simclr.clone(),
        moco.clone(),
        byol.clone(),
        simsiam.clone(),
        barlow.clone(),
        vicreg.clone(),
        mocov3.clone(),
        dino.clone(),
        mae,
    ];
    all.extend([
        AnchorRecipe {
            lr_per_256: 0.3,
            sets: &["head_hidden=4096", "head_out=512"],
            differences: "",
            ..in100(simclr, "solo-learn/imagenet-100/simclr", SOLO_IN100)
        },
        AnchorRecipe {
            sets: &["hidden=2048", "out=256", "queue_size=65536", "momentum=0.99"],
            differences: "MoCo v2+'s key momentum rises from 0.99 to 0.999 there, stays 0.99 here; split \
                          BatchNorm (8 splits) instead of synchronised BatchNorm",
            ..in100(moco, "solo-learn/imagenet-100/moco-v2", SOLO_IN100)
        },
        AnchorRecipe {
            lr_per_256: 0.5,
            weight_decay: 1e-6,
            differences: "one hidden width for projector and predictor (4096; the predictor's is 8192 there)",
            ..in100(byol, "solo-learn/imagenet-100/byol", SOLO_IN100)
        },
        AnchorRecipe {
            augment: "byol",
            differences: "the projector's hidden width equals its output (2048, as there)",
            ..in100(simsiam, "solo-learn/imagenet-100/simsiam", SOLO_IN100)
        },
        in100(barlow, "solo-learn/imagenet-100/barlow-twins", SOLO_IN100),
        AnchorRecipe {
            differences:
                "BYOL's asymmetric views instead of solo-learn's VICReg views (crop scale from 0.2, \
                          blur p = 0.5 and solarize p = 0.1 on both)",
            ..in100(vicreg, "solo-learn/imagenet-100/vicreg", SOLO_IN100)
        },
        in100(mocov3, "solo-learn/imagenet-100/moco-v3", SOLO_IN100),
        AnchorRecipe {
            more_sets: &["warmup_teacher_temp_epochs=50"],
            ..in100(dino, "solo-learn/imagenet-100/dino", SOLO_IN100)
        },
    ]);
    let jitter = "colour jitter at strength 0.5 there (lightly's cj_strength), ssl-rs's preset strength here";
    all.extend([
        lightly(
            "lightly/cifar10/simclr",
            "simclr",
            0.12,
            Some(0.5),
            "simclr",
            &["head_hidden=512", "head_out=128"],
            jitter,
        ),
        lightly(
            "lightly/cifar10/moco-v2",
            "moco-v2",
            0.12,
            Some(0.1),
            "simclr",
            &["hidden=512", "out=128", "queue_size=4096", "momentum=0.99"],
            "lightly's MoCo keeps a memory bank of 4096 keys in NT-Xent with plain BatchNorm; ssl-rs's \
             MoCo v2 uses InfoNCE against its queue with split BatchNorm; colour jitter at strength 0.5 there",
        ),
        lightly(
            "lightly/cifar10/byol",
            "byol",
            0.12,
            None,
            "byol",
            &["hidden=1024", "out=256", "base_momentum=0.99"],
            "the target momentum is fixed at 0.99 there, rises from 0.99 to 1 here",
        ),
        lightly(
            "lightly/cifar10/simsiam",
            "simsiam",
            0.03,
            None,
            "moco-v2",
            &["out=2048", "pred_hidden=512"],
            "lightly's SimSiam views (SimSiamTransform) approximated by MoCo v2's; lightly does not scale \
             SimSiam's 0.06 with the batch, here it is 0.03 per 256 (0.06 at the recipe's 512)",
        ),
        lightly("lightly/cifar10/barlow-twins", "barlow-twins", 0.12, None, "byol", &["width=2048"], ""),
        lightly(
            "lightly/cifar10/dino",
            "dino",
            0.12,
            None,
            "byol",
            &[
                "hidden=2048",
                "bottleneck=256",
                "out=2048",
                "head_layers=2",
                "head_batch_norm=true",
                "base_momentum=0.99",
                "teacher_temp=0.04",
                "warmup_teacher_temp=0.04",
            ],
            "the teacher momentum is fixed at 0.99 there, rises from 0.99 to 1 here; DINOTransform's views \
             (colour jitter 0.5, no local crops) approximated by BYOL's",
        ),
    ]);
    all
}

/// The recipe called `name`, or an error listing them all.
pub fn recipe(name: &str) -> crate::Result<AnchorRecipe> {
    let all = recipes();
    all.iter().find(|r| r.name == name).cloned().ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|r| r.name).collect();
        crate::Error::Config(format!("unknown recipe `{name}`; expected one of: {}", names.join(", ")))
    })
}

/// What every solo-learn recipe does differently from solo-learn.
pub fn solo_learn_common_differences() -> &'static str {
    SOLO_COMMON
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::BackboneConfig;
    use crate::methods;
    use crate::resnet::ResNetConfig;
    use crate::vit::VitConfig;
    use ssl_core::config::Override;
    use tch::{nn, Device};

    #[test]
    fn every_recipe_names_a_method_and_its_overrides_fit_its_config() {
        let all = recipes();
        let mut names = std::collections::HashSet::new();
        for r in &all {
            assert!(names.insert(r.name), "{} twice", r.name);
            assert!(methods::METHODS.contains(&r.method), "{}", r.name);
            assert!(["sgd", "lars", "lars-clip", "adamw"].contains(&r.optimizer), "{}", r.name);
            let sets: Vec<Override> = r.sets.iter().chain(r.more_sets).map(|s| s.parse().unwrap()).collect();
            // A narrow backbone keeps this cheap; the overrides are checked
            // against the method's real config.
            let backbone: BackboneConfig = match r.patch_size {
                Some(p) => VitConfig { depth: 1, ..VitConfig::mini(8, p as i64) }.into(),
                None => ResNetConfig::resnet18_cifar().with_width(2).into(),
            };
            let light: Vec<Override> = sets
                .into_iter()
                .map(|o| match o.key.as_str() {
                    // Build small: the widths are only type-checked here.
                    "hidden" | "out" | "width" | "head_hidden" | "head_out" | "queue_size" | "bottleneck"
                    | "pred_hidden" | "decoder_dim" => Override { value: serde_json::json!(8), ..o },
                    "decoder_heads" => Override { value: serde_json::json!(2), ..o },
                    "decoder_depth" => Override { value: serde_json::json!(1), ..o },
                    _ => o,
                })
                .collect();
            let vs = nn::VarStore::new(Device::Cpu);
            let built = methods::build(r.method, &vs, &backbone, r.temperature, &light);
            assert!(built.is_ok(), "{}: {}", r.name, built.err().unwrap());
        }
        // docs/recipes.md names each one (or its group, `project/data/*`).
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/recipes.md")).unwrap();
        for r in &all {
            let group = format!("{}/*", &r.name[..r.name.rfind('/').unwrap()]);
            assert!(
                doc.contains(&format!("`{}`", r.name)) || doc.contains(&group),
                "docs/recipes.md lacks {}",
                r.name
            );
        }
        assert!(recipe("solo-learn/cifar/byol").is_ok());
        let e = recipe("solo-learn/cifar/swav").unwrap_err().to_string();
        assert!(e.contains("unknown recipe") && e.contains("lightly/cifar10/dino"), "{e}");
    }
}

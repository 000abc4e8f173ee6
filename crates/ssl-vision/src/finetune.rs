//! Full fine-tuning of image backbones: ssl-core's [`ssl_core::finetune`]
//! fed with augmented views of an image set, and MAE's layer-wise
//! learning-rate decay for ViTs. Run on the pretrained encoder and on the
//! same architecture at random initialisation, it tells how much
//! pretraining helps when labels are used end to end (where MAE shines).

use crate::augment::ViewAugment;
use crate::backbone::Backbone;
use crate::data::ImageSet;
use crate::source::ViewSource;
use crate::Result;
use serde::Serialize;
use ssl_core::finetune::FineTuneRecipe;
use ssl_core::mixup::MixupConfig;
use ssl_core::optim::OptimizerConfig;
use tch::nn;
use tch::Tensor;

/// How to fine-tune.
#[derive(Clone, Debug, Serialize)]
pub struct FineTuneConfig {
    /// Epochs over the labelled training split.
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Peak learning rate (AdamW).
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Seed for shuffling and augmentation.
    pub seed: u64,
    /// Layer-wise learning-rate decay for ViT backbones (MAE fine-tunes
    /// with 0.75; 1 or `None`: off). Ignored for ResNets.
    pub layer_decay: Option<f64>,
    /// Mixup, CutMix and label smoothing.
    pub mixup: MixupConfig,
    /// Stochastic depth of ViT backbones (timm's `drop_path_rate`; MAE:
    /// 0.1): the caller builds the backbone with it
    /// ([`ssl_core::vit::VitConfig::with_drop_path`]); recorded here for
    /// the report.
    pub drop_path: f64,
    /// How a ViT's tokens are pooled (the caller builds the backbone with
    /// it); `None` for ResNets. Recorded for the report.
    pub pool: Option<ssl_core::vit::Pool>,
}

pub use ssl_core::finetune::FineTuneResult;

/// Fine-tunes `backbone` (its variables in `backbone_vs`) with a new linear
/// head on `train` (the augmentation's first view), and scores it on
/// `test_x`/`test_y` (already through the evaluation transform); see
/// [`ssl_core::finetune::fine_tune`]. The backbone's weights change.
#[allow(clippy::too_many_arguments)]
pub fn fine_tune(
    backbone: &Backbone,
    backbone_vs: &nn::VarStore,
    train: &ImageSet,
    aug: &ViewAugment,
    num_classes: usize,
    test_x: &Tensor,
    test_y: &Tensor,
    cfg: &FineTuneConfig,
) -> Result<FineTuneResult> {
    let mut opt_cfg = OptimizerConfig::adamw(cfg.lr, cfg.weight_decay);
    if let (Backbone::Vit(vit), Some(decay)) = (backbone, cfg.layer_decay) {
        opt_cfg.lr_scales = vit.config().layer_decay_scales("", decay);
    }
    let source = ViewSource::with_views(train, vec![aug.clone()], cfg.batch_size, cfg.seed);
    let r = ssl_core::finetune::fine_tune(
        backbone,
        backbone_vs,
        backbone.feature_dim(),
        &source,
        num_classes,
        test_x,
        test_y,
        &FineTuneRecipe {
            mixup: cfg.mixup.clone(),
            seed: cfg.seed,
            ..FineTuneRecipe::plain(cfg.epochs, opt_cfg)
        },
    )?;
    Ok(r)
}

/// Copies the backbone a method evaluates (`backbone.`, `online.backbone.`,
/// DINO's `teacher.backbone.` or MAE's encoder at the root; never a
/// momentum target: [`ssl_core::weights::evaluated_prefix`]) from
/// `method_vs` into `backbone_vs` (a backbone built at its root).
pub fn copy_backbone(method_vs: &nn::VarStore, backbone_vs: &nn::VarStore) -> Result<()> {
    let keys = ssl_core::weights::keys_of(backbone_vs);
    let prefix = ssl_core::weights::evaluated_prefix(method_vs, &keys).map_err(|_| {
        ssl_core::Error::Config("the method has no encoder variable matching the backbone".into())
    })?;
    Ok(ssl_core::finetune::copy_encoder(method_vs, backbone_vs, &[prefix.as_str()])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resnet::ResNetConfig;
    use crate::source::eval_tensor;
    use tch::Device;

    #[test]
    fn fine_tuning_learns_the_labels() {
        tch::manual_seed(0);
        let d = crate::data::bundled_mnist5k().unwrap();
        let train =
            ImageSet { images: d.train.images[..512].to_vec(), labels: d.train.labels[..512].to_vec() };
        let test = ImageSet { images: d.test.images[..200].to_vec(), labels: d.test.labels[..200].to_vec() };
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = ResNetConfig::resnet18_cifar().with_width(8).with_in_channels(1);
        let backbone = Backbone::new(&vs.root(), &cfg.into());
        let aug = ViewAugment::digits(28);
        let test_x = eval_tensor(&test, &aug);
        let test_y = Tensor::from_slice(&test.labels);
        let ft = FineTuneConfig {
            epochs: 8,
            batch_size: 32,
            lr: 3e-3,
            weight_decay: 0.0,
            seed: 0,
            layer_decay: None,
            mixup: MixupConfig::smoothing_only(0.0),
            drop_path: 0.0,
            pool: None,
        };
        let r = fine_tune(&backbone, &vs, &train, &aug, 10, &test_x, &test_y, &ft).unwrap();
        // Chance is 10%; 128 steps on 512 digits reach far above it.
        assert!(r.test_top1 > 0.5, "{r:?}");
        assert!(r.final_train_loss < 1.5, "{r:?}");
    }

    #[test]
    fn backbones_are_found_under_every_method_prefix() {
        let cfg: crate::backbone::BackboneConfig =
            ResNetConfig::resnet18_cifar().with_width(4).with_in_channels(1).into();
        for method in ["simclr", "byol", "dino"] {
            tch::manual_seed(1);
            let vs = nn::VarStore::new(Device::Cpu);
            let _ = crate::methods::build(method, &vs, &cfg, None, &[]).unwrap();
            let copy = nn::VarStore::new(Device::Cpu);
            let _ = Backbone::new(&copy.root(), &cfg);
            copy_backbone(&vs, &copy).unwrap();
            let src = vs.variables();
            let key = match method {
                "simclr" => "backbone.conv1.weight",
                "dino" => "teacher.backbone.conv1.weight",
                _ => "online.backbone.conv1.weight",
            };
            assert!(copy.variables()["conv1.weight"].equal(&src[key]), "{method}");
        }
        let empty = nn::VarStore::new(Device::Cpu);
        let copy = nn::VarStore::new(Device::Cpu);
        let _ = Backbone::new(&copy.root(), &cfg);
        assert!(copy_backbone(&empty, &copy).unwrap_err().to_string().contains("no encoder variable"));
    }
}

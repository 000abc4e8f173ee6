//! Full fine-tuning: a linear classifier on the backbone, both trained with
//! labels (AdamW, cosine decay, the augmentation's first view), then scored
//! on the held-out split. Run on the pretrained encoder and on the same
//! architecture at random initialisation, it tells how much pretraining
//! helps when labels are used end to end (where MAE shines).

use crate::augment::ViewAugment;
use crate::backbone::Backbone;
use crate::data::ImageSet;
use crate::source::ViewSource;
use crate::Result;
use serde::Serialize;
use ssl_core::optim::{Optimizer, OptimizerConfig};
use ssl_core::schedule::WarmupCosine;
use ssl_core::BatchSource;
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};

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
}

/// What fine-tuning reports.
#[derive(Clone, Debug, Serialize)]
pub struct FineTuneResult {
    /// Top-1 on the held-out split.
    pub test_top1: f64,
    /// Mean training loss of the last epoch.
    pub final_train_loss: f64,
}

/// Fine-tunes `backbone` (its variables in `backbone_vs`) with a new linear
/// head on `train`, and scores it on `test_x`/`test_y` (already through the
/// evaluation transform). The backbone's weights change.
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
    let device = backbone_vs.device();
    let head_vs = nn::VarStore::new(device);
    // The features are standardised per dimension before the linear layer
    // (a BatchNorm without affine parameters, as MAE's probing head and our
    // linear probe): a ViT's class token after its final LayerNorm carries a
    // large offset shared by every image, which otherwise swamps what the
    // new head must learn in a few epochs.
    let bn = nn::BatchNormConfig { affine: false, ..Default::default() };
    let norm = nn::batch_norm1d(head_vs.root() / "head_norm", backbone.feature_dim(), bn);
    let linear =
        nn::linear(head_vs.root() / "head", backbone.feature_dim(), num_classes as i64, Default::default());
    let head = |f: &Tensor, train: bool| linear.forward(&f.apply_t(&norm, train));
    let mut named: Vec<(String, Tensor)> = backbone_vs.variables().into_iter().collect();
    named.extend(head_vs.variables());
    let mut opt_cfg = OptimizerConfig::adamw(cfg.lr, cfg.weight_decay);
    if let (Backbone::Vit(vit), Some(decay)) = (backbone, cfg.layer_decay) {
        opt_cfg.lr_scales = vit.config().layer_decay_scales("", decay);
    }
    let mut opt = Optimizer::new(&opt_cfg, named);
    let source = ViewSource::with_views(train, vec![aug.clone()], cfg.batch_size, cfg.seed);
    let per_epoch = source.batches_per_epoch();
    let schedule = WarmupCosine {
        base_lr: cfg.lr,
        final_lr: 0.0,
        warmup_steps: per_epoch.min(cfg.epochs * per_epoch / 10),
        total_steps: cfg.epochs * per_epoch,
    };
    let mut step = 0;
    let mut last_loss = f64::NAN;
    for epoch in 0..cfg.epochs {
        let mut sum = Tensor::zeros([], (Kind::Float, device));
        for i in 0..per_epoch {
            let batch = source.batch(epoch, i)?.to_device(device);
            let y = batch.labels.as_ref().expect("ViewSource batches carry labels");
            opt.zero_grad();
            let loss = head(&backbone.forward_t(&batch.views[0], true), true).cross_entropy_for_logits(y);
            loss.backward();
            opt.step(schedule.lr(step));
            step += 1;
            sum += loss.detach();
        }
        last_loss = sum.double_value(&[]) / per_epoch.max(1) as f64;
    }
    let correct = tch::no_grad(|| {
        let n = test_x.size()[0];
        (0..n)
            .step_by(512)
            .map(|s| {
                let x = test_x.narrow(0, s, 512.min(n - s)).to_device(device);
                let pred =
                    head(&backbone.forward_t(&x, false), false).argmax(1, false).to_device(Device::Cpu);
                pred.eq_tensor(&test_y.narrow(0, s, 512.min(n - s))).sum(Kind::Int64).int64_value(&[])
            })
            .sum::<i64>()
    });
    Ok(FineTuneResult { test_top1: correct as f64 / test_y.size()[0] as f64, final_train_loss: last_loss })
}

/// Where the methods keep their backbone: `backbone.` (SimCLR),
/// `online.backbone.` (the two-branch methods) or the root (MAE's encoder).
const BACKBONE_PREFIXES: [&str; 3] = ["", "backbone.", "online.backbone."];

/// Copies a method's backbone weights from `method_vs` into `backbone_vs`
/// (a backbone built at its root), matching names under the known prefixes.
pub fn copy_backbone(method_vs: &nn::VarStore, backbone_vs: &nn::VarStore) -> Result<()> {
    let src = method_vs.variables();
    for (name, dst) in backbone_vs.variables() {
        let found = BACKBONE_PREFIXES.iter().find_map(|p| src.get(&format!("{p}{name}")));
        let t = found
            .ok_or_else(|| crate::Error::Config(format!("the method has no backbone variable `{name}`")))?;
        if t.size() != dst.size() {
            return Err(crate::Error::Config(format!(
                "backbone `{name}`: {:?} vs {:?}",
                t.size(),
                dst.size()
            )));
        }
        tch::no_grad(|| dst.shallow_clone().copy_(t));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resnet::ResNetConfig;
    use crate::source::eval_tensor;

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
        for method in ["simclr", "byol"] {
            tch::manual_seed(1);
            let vs = nn::VarStore::new(Device::Cpu);
            let _ = crate::methods::build(method, &vs, &cfg, None).unwrap();
            let copy = nn::VarStore::new(Device::Cpu);
            let _ = Backbone::new(&copy.root(), &cfg);
            copy_backbone(&vs, &copy).unwrap();
            let src = vs.variables();
            let key =
                if method == "simclr" { "backbone.conv1.weight" } else { "online.backbone.conv1.weight" };
            assert!(copy.variables()["conv1.weight"].equal(&src[key]), "{method}");
        }
        let empty = nn::VarStore::new(Device::Cpu);
        let copy = nn::VarStore::new(Device::Cpu);
        let _ = Backbone::new(&copy.root(), &cfg);
        assert!(copy_backbone(&empty, &copy).unwrap_err().to_string().contains("no backbone variable"));
    }
}

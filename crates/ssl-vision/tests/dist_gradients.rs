//! Every vision method on two CPU ranks (Gloo, 127.0.0.1) against one
//! process on the global batch, in f64: the gradients of the first of two
//! SGD steps and every variable after both (momentum targets, MoCo's
//! queue, BatchNorm statistics with --sync-bn) agree to 1e-10, and the
//! wrong variants of the collectives each method relies on fail the same
//! check. See `ssl_core::dist_check`.

use ssl_core::dist_check::{assert_outcomes, check_methods, Case};
use ssl_core::method::Batch;
use ssl_dist::Fault;
use ssl_vision::backbone::BackboneConfig;
use ssl_vision::methods;
use ssl_vision::moco::{MocoV2, MocoV2Config};
use ssl_vision::resnet::ResNetConfig;
use ssl_vision::vit::VitConfig;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn resnet() -> BackboneConfig {
    ResNetConfig::resnet18_cifar().with_width(4).with_in_channels(1).into()
}

fn vit() -> BackboneConfig {
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

/// Two global batches of 8 two-view images, f64.
fn batches() -> Vec<Batch> {
    (0..2)
        .map(|step| {
            let x = (Tensor::arange(8 * 144, (Kind::Double, Device::Cpu)).reshape([8, 1, 12, 12])
                * (0.37 + 0.1 * step as f64))
                .sin();
            let y = (&x * 0.8 + 0.1).flip([3]).contiguous();
            Batch { views: vec![x, y], labels: None }
        })
        .collect()
}

/// The batches with two local crops (8 px) appended to each.
fn multi_crop(batches: Vec<Batch>) -> Vec<Batch> {
    batches
        .into_iter()
        .map(|b| {
            let local: Vec<Tensor> =
                (0..2).map(|i| b.views[i].narrow(2, 2 * i as i64, 8).narrow(3, 4, 8).contiguous()).collect();
            Batch { views: b.views.into_iter().chain(local).collect(), labels: None }
        })
        .collect()
}

fn case(name: &str, backbone: BackboneConfig, sync_bn: bool, draws: i64, wrong: Vec<Fault>) -> Case {
    let method = name.to_string();
    Case {
        name: name.to_string(),
        build: Box::new(move || {
            tch::manual_seed(7);
            let mut vs = VarStore::new(Device::Cpu);
            let (m, _) = methods::build(&method, &vs, &backbone, None, &[]).expect("building the method");
            vs.double();
            (vs, m)
        }),
        batches: batches(),
        sync_bn,
        compare_buffers: sync_bn,
        draws_per_sample: draws,
        wrong,
    }
}

fn cases() -> Vec<Case> {
    use Fault::*;
    vec![
        case("simclr", resnet(), true, 0, vec![GatherLocalSliceBackward, LocalGather, LocalStatistics]),
        case("moco-v3", vit(), true, 0, vec![LocalGather, LocalStatistics]),
        case("byol", resnet(), true, 0, vec![LocalStatistics, SkipGradSync]),
        case("simsiam", resnet(), true, 0, vec![LocalStatistics, SkipGradSync]),
        case("barlow-twins", resnet(), true, 0, vec![LocalStatistics, AllReduceBackwardIdentity]),
        case("vicreg", resnet(), true, 0, vec![LocalStatistics, AllReduceBackwardIdentity]),
        // MAE draws one mask value per patch: 3 x 3 patches.
        case("mae", vit(), false, 9, vec![SkipGradSync]),
        Case {
            // Multi-crop: 2 global views and 2 local 8-px crops (the ViT
            // resamples its position embeddings). The default head has
            // BatchNorm (synchronised here); statistics that are not
            // all-reduced also break the centre, which is compared too (a
            // variable).
            batches: multi_crop(batches()),
            ..case("dino", vit(), true, 0, vec![LocalStatistics, SkipGradSync])
        },
        Case {
            // Per-rank BatchNorm sub-batches and shuffle-BN of the keys; the
            // reference: one process with 2 shuffled sub-batches.
            name: "moco-v2".into(),
            build: Box::new(|| {
                tch::manual_seed(7);
                let mut vs = VarStore::new(Device::Cpu);
                let cfg = MocoV2Config {
                    queue_size: 20,
                    bn_splits: 2,
                    shuffle_bn: true,
                    hidden: 64,
                    ..MocoV2Config::new(resnet())
                };
                let m = MocoV2::new(&vs, &cfg).expect("building moco-v2");
                vs.double();
                (vs, Box::new(m) as Box<dyn ssl_core::Method>)
            }),
            batches: batches(),
            sync_bn: false,
            compare_buffers: false,
            draws_per_sample: 0,
            wrong: vec![LocalGather, SkipGradSync],
        },
    ]
}

#[test]
fn every_vision_method_has_the_global_batch_gradient_on_two_ranks() {
    let outcomes = check_methods("every_vision_method_has_the_global_batch_gradient_on_two_ranks", &cases);
    assert_outcomes(&outcomes, 1e-10);
}

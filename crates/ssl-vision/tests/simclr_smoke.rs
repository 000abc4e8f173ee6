//! SimCLR trains: a few steps on the bundled digits lower the loss, and the
//! features have the backbone's width.

use ssl_core::method::Method;
use ssl_core::optim::{Optimizer, OptimizerConfig};
use ssl_core::BatchSource;
use ssl_vision::augment::ViewAugment;
use ssl_vision::data;
use ssl_vision::resnet::ResNetConfig;
use ssl_vision::simclr::{SimClr, SimClrConfig};
use ssl_vision::source::ViewSource;
use tch::{nn, Device, Kind, Tensor};

#[test]
fn a_few_steps_lower_the_loss_on_a_fixed_batch() {
    tch::manual_seed(0);
    let d = data::bundled_mnist5k().unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = SimClrConfig {
        backbone: ResNetConfig::resnet18_cifar().with_width(4).with_in_channels(1).into(),
        head_hidden: 64,
        head_out: 32,
        temperature: 0.5,
    };
    let method = SimClr::new(&vs.root(), &cfg);
    let source = ViewSource::new(&d.train, ViewAugment::digits(28), 64, 0);
    let batch = source.batch(0, 0).unwrap();
    assert_eq!(batch.views.len(), 2);
    assert_eq!(batch.views[0].size(), [64, 1, 28, 28]);
    let mut opt = Optimizer::from_var_store(&OptimizerConfig::adamw(3e-3, 0.0), &vs);
    let first = method.loss(&batch, true).unwrap().loss.double_value(&[]);
    for _ in 0..15 {
        opt.zero_grad();
        let loss = method.loss(&batch, true).unwrap().loss;
        loss.backward();
        opt.step(3e-3);
    }
    let last = method.loss(&batch, true).unwrap().loss.double_value(&[]);
    assert!(last < first - 0.3, "loss {first} -> {last}");
    let f = method.features(&Tensor::zeros([2, 1, 28, 28], (Kind::Float, Device::Cpu)));
    assert_eq!(f.size(), [2, 32]);
}

#[test]
fn batches_are_reproducible_and_epochs_reshuffle() {
    let d = data::bundled_mnist5k().unwrap();
    let source = ViewSource::new(&d.train, ViewAugment::digits(28), 32, 7);
    let a = source.batch(1, 2).unwrap();
    let b = source.batch(1, 2).unwrap();
    assert!(a.views[0].equal(&b.views[0]) && a.views[1].equal(&b.views[1]));
    assert!(!a.views[0].equal(&a.views[1]), "the two views must differ");
    let c = source.batch(2, 2).unwrap();
    assert!(!a.labels.unwrap().equal(&c.labels.unwrap()), "a new epoch reshuffles");
    assert_eq!(source.batches_per_epoch(), 4000 / 32);
}

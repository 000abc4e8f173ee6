//! CUDA checks, run on a GPU machine with `--features cuda-tests`.
#![cfg(feature = "cuda-tests")]

use ssl_core::losses::nt_xent;
use ssl_core::optim::{Optimizer, OptimizerConfig};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

#[test]
fn cuda_is_linked_and_visible() {
    assert!(tch::Cuda::is_available(), "libtorch_cuda not loaded or no GPU");
    assert!(tch::Cuda::device_count() >= 1);
    assert!(tch::Cuda::cudnn_is_available());
}

#[test]
fn nt_xent_on_cuda_matches_cpu() {
    tch::manual_seed(0);
    let a = Tensor::randn([64, 32], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([64, 32], (Kind::Float, Device::Cpu));
    let cpu = nt_xent(&a, &b, 0.2).double_value(&[]);
    let gpu = nt_xent(&a.to(Device::Cuda(0)), &b.to(Device::Cuda(0)), 0.2).double_value(&[]);
    assert!((cpu - gpu).abs() < 1e-4, "{cpu} vs {gpu}");
}

#[test]
fn bf16_autocast_trains_on_cuda() {
    let dev = Device::Cuda(0);
    let vs = nn::VarStore::new(dev);
    let lin = nn::linear(vs.root() / "l", 32, 32, Default::default());
    let mut opt = Optimizer::from_var_store(&OptimizerConfig::sgd(0.1, 0.0), &vs);
    let x = Tensor::randn([16, 32], (Kind::Float, dev));
    let mut first = None;
    for _ in 0..20 {
        opt.zero_grad();
        let (y, loss) = ssl_core::amp::bf16_autocast(true, || {
            let y = lin.forward(&x);
            let loss = y.square().mean(Kind::Float);
            (y, loss)
        });
        assert_eq!(y.kind(), Kind::BFloat16, "autocast must run the linear layer in bf16");
        loss.backward();
        opt.step(0.1);
        first.get_or_insert(loss.double_value(&[]));
    }
    let last = lin.forward(&x).square().mean(Kind::Float).double_value(&[]);
    assert!(last < first.unwrap() * 0.5, "{last} vs {first:?}");
}

/// On CUDA, SGD and AdamW take libtorch's multi-tensor kernels; five steps
/// over two groups (decayed weights, undecayed biases) match the
/// per-parameter path on the same device.
#[test]
fn fused_optimizers_on_cuda_match_the_per_parameter_path() {
    let d = Device::Cuda(0);
    for cfg in [OptimizerConfig::sgd(0.1, 1e-4), OptimizerConfig::adamw(1e-3, 0.05)] {
        tch::manual_seed(0);
        let init: Vec<Tensor> =
            vec![Tensor::randn([64, 32], (Kind::Float, d)), Tensor::randn([64], (Kind::Float, d))];
        let grads: Vec<Vec<Tensor>> = (0..5).map(|_| init.iter().map(|t| t.randn_like()).collect()).collect();
        let mut out = Vec::new();
        for fused in [false, true] {
            let ps: Vec<Tensor> = init.iter().map(|t| t.copy().set_requires_grad(true)).collect();
            let named =
                vec![("w".to_string(), ps[0].shallow_clone()), ("b".to_string(), ps[1].shallow_clone())];
            let mut opt = Optimizer::new(&cfg, named).with_fused(fused);
            assert_eq!(opt.fused(), fused);
            for g in &grads {
                opt.zero_grad();
                ((&ps[0] * &g[0]).sum(Kind::Float) + (&ps[1] * &g[1]).sum(Kind::Float)).backward();
                opt.step(cfg.lr);
            }
            out.push(ps);
        }
        for (a, b) in out[0].iter().zip(&out[1]) {
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{:?}: fused and per-parameter differ by {diff:e}", cfg.kind);
        }
    }
    let p = Tensor::zeros([3], (Kind::Float, d)).set_requires_grad(true);
    assert!(
        Optimizer::new(&OptimizerConfig::adamw(1e-3, 0.0), vec![("p".into(), p)]).fused(),
        "fused by default on CUDA"
    );
}

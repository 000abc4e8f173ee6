//! ssl-dist on a CUDA device (behind the `cuda-tests` feature; run on a
//! GPU machine, see tools/device/dist.sh): a NCCL group of one (created
//! through the rendezvous; its collectives return before NCCL, as every
//! world of one does), and two
//! ranks sharing one GPU through Gloo, whose differentiable gather gives the
//! one-process gradient. With `nccl` and two GPUs, two NCCL ranks too.
#![cfg(feature = "cuda-tests")]

use ssl_dist::testing::{load, rank_dir, run_ranks, save};
use ssl_dist::{CudaBackend, Group, GroupOptions, Launch, ReduceOp};
use std::time::Duration;
use tch::{Device, Kind, Tensor};

fn gathered_loss(x: &Tensor, g: &Tensor) -> Tensor {
    x.matmul(&g.tr()).logsumexp([1i64].as_slice(), false).mean(Kind::Double)
}

fn batch(device: Device) -> Tensor {
    Tensor::arange(24, (Kind::Double, device)).reshape([6, 4]).sin()
}

#[test]
fn nccl_with_a_world_of_one() {
    if !Group::has_nccl() {
        eprintln!("built without the nccl feature: skipped");
        return;
    }
    let launch = Launch {
        rank: 0,
        world_size: 1,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: ssl_dist::testing::free_port(),
        agent_store: None,
    };
    let opts = GroupOptions {
        timeout: Duration::from_secs(60),
        cuda_device: Some(0),
        cuda_backend: CudaBackend::Nccl,
    };
    let g = Group::connect(&launch, &opts).expect("a NCCL group of one");
    let t = Tensor::from_slice(&[1.0f32, 2.0]).to_device(Device::Cuda(0));
    g.all_reduce_(&t, ReduceOp::Sum).unwrap();
    assert_eq!(Vec::<f32>::try_from(t.to_device(Device::Cpu)).unwrap(), [1.0, 2.0]);
    let bf = Tensor::ones([8], (Kind::BFloat16, Device::Cuda(0)));
    g.all_reduce_(&bf, ReduceOp::Sum).unwrap();
    assert_eq!(bf.kind(), Kind::BFloat16);
    assert_eq!(
        bf.to_kind(Kind::Float).sum(Kind::Float).double_value(&[]),
        8.0,
        "bf16 sum over a world of one"
    );
    let x = batch(Device::Cuda(0)).set_requires_grad(true);
    gathered_loss(&x, &g.all_gather_with_grad(&x).unwrap()).backward();
    let y = batch(Device::Cuda(0)).set_requires_grad(true);
    gathered_loss(&y, &y).backward();
    let d = (x.grad() - y.grad()).abs().max().double_value(&[]);
    assert!(d < 1e-12, "{d:e}");
}

fn cuda_ranks(test: &str, backend: &str) {
    if let Some(dir) = rank_dir(test) {
        let backend = if backend == "nccl" { CudaBackend::Nccl } else { CudaBackend::Gloo };
        let rank: usize = std::env::var("RANK").unwrap().parse().unwrap();
        let device = if backend == CudaBackend::Nccl { rank } else { 0 };
        let opts = GroupOptions {
            timeout: Duration::from_secs(60),
            cuda_device: Some(device),
            cuda_backend: backend,
        };
        let g = Group::from_env(&opts).unwrap();
        let x = batch(Device::Cuda(device)).narrow(0, rank as i64 * 3, 3).set_requires_grad(true);
        gathered_loss(&x, &g.all_gather_with_grad(&x).unwrap()).backward();
        save(&dir, &format!("rank{rank}.st"), &[("grad".into(), x.grad() / 2.0)]);
        g.barrier().unwrap();
        return;
    }
    let run = run_ranks(test, 2, Duration::from_secs(120), &[]);
    run.assert_success();
    let x = batch(Device::Cpu).set_requires_grad(true);
    gathered_loss(&x, &x).backward();
    let parts: Vec<Tensor> = (0..2).map(|r| load(&run.dir, &format!("rank{r}.st")).remove(0).1).collect();
    let d = (Tensor::cat(&parts, 0) - x.grad()).abs().max().double_value(&[]);
    eprintln!("{test}: {d:e}");
    assert!(d < 1e-12, "{d:e}");
}

#[test]
fn two_ranks_share_one_gpu_through_gloo() {
    cuda_ranks("two_ranks_share_one_gpu_through_gloo", "gloo");
}

#[test]
fn two_nccl_ranks_on_two_gpus() {
    if !Group::has_nccl() || tch::Cuda::device_count() < 2 {
        eprintln!("needs the nccl feature and two GPUs: skipped");
        return;
    }
    cuda_ranks("two_nccl_ranks_on_two_gpus", "nccl");
}

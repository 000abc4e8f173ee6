//! ssl-cli: the options every `train-*` binary shares, as one clap group
//! ([`RunArgs`], flattened into each binary's arguments), and [`RunArgs::start`],
//! which turns them into a started run: the process group from torchrun's
//! environment (a world of one without it), the device of this rank, the
//! seed, synchronised BatchNorm. Binaries keep only what differs: their
//! data, methods and help texts (`#[command(mut_arg(…))]` rewords a shared
//! option where its meaning differs, such as the default run folder).
//!
//! Libraries never parse flags; this crate is the one place that does for
//! what the binaries share.

use clap::Args;
use serde::Serialize;
use ssl_core::device::{device_name, parse_device, seed_everything};
use ssl_core::{Error, Result};
use ssl_dist::{CudaBackend, Group, GroupOptions, Launch};
use std::path::PathBuf;
use std::time::Duration;
use tch::Device;

/// The run options every training binary shares.
#[derive(Args, Debug, Clone, Serialize)]
pub struct RunArgs {
    /// auto | cpu | cuda | cuda:N. With several ranks, auto and cuda mean
    /// cuda:LOCAL_RANK (one GPU per rank).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Run folder (config.json, metrics.jsonl, checkpoints/, report.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from the run folder's latest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Seed for weights, shuffling, augmentation and masks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Checkpoint every N epochs (the last one always).
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Disable bf16 autocast on CUDA.
    #[arg(long)]
    pub no_bf16: bool,
    /// Gradient accumulation: cut each step's batch into N micro-batches
    /// whose gradients add up (less memory; the same samples per step).
    /// `--batch-size` stays the samples per optimizer step, over all ranks.
    /// Losses over in-batch negatives (simclr, moco-v3, cola) then compare
    /// each sample with the negatives of its micro-batch only: N times fewer.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub accumulate: u64,
    /// Synchronised BatchNorm: with several ranks, BatchNorm layers
    /// normalise with the statistics of the whole global batch (PyTorch's
    /// SyncBatchNorm) instead of each rank's part (DDP's default).
    #[arg(long)]
    pub sync_bn: bool,
    /// Seconds a collective (or the rendezvous) may wait for the other
    /// ranks before the run stops with an error naming them.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub dist_timeout: u64,
    /// The backend for CUDA tensors with several ranks: auto (NCCL when
    /// built with it, else Gloo), nccl, or gloo (lets ranks share a GPU).
    #[arg(long, default_value = "auto")]
    pub dist_backend: String,
}

/// A started run: where this rank trains and with whom.
pub struct Run {
    /// This rank's device.
    pub device: Device,
    /// The process group (`ssl_dist::world()`).
    pub group: &'static Group,
    /// The seed.
    pub seed: u64,
}

impl Run {
    /// Rank 0: prints, writes files, evaluates.
    pub fn is_main(&self) -> bool {
        self.group.is_main()
    }

    /// `cpu`, `cuda:N`, and with several ranks `(rank R of W)`.
    pub fn describe(&self) -> String {
        let d = device_name(self.device);
        if self.group.is_distributed() {
            format!("{d} (rank {} of {})", self.group.rank(), self.group.world_size())
        } else {
            d
        }
    }
}

impl RunArgs {
    /// Joins the other ranks (when launched by torchrun or `cargo xtask …
    /// --nproc-per-node`), picks this rank's device, turns on synchronised
    /// BatchNorm when asked, and seeds libtorch. Call it once, first.
    pub fn start(&self) -> Result<Run> {
        let launch = Launch::from_env()?;
        let device = self.device_for(launch.as_ref().map(|l| l.local_rank))?;
        let cuda_backend = match self.dist_backend.as_str() {
            "auto" => CudaBackend::Auto,
            "nccl" => CudaBackend::Nccl,
            "gloo" => CudaBackend::Gloo,
            o => {
                return Err(Error::Config(format!(
                    "unknown --dist-backend `{o}`; expected auto, nccl or gloo"
                )))
            }
        };
        let group = match &launch {
            None => Group::single(),
            Some(l) => {
                let cuda_device = match device {
                    Device::Cuda(i) => Some(i),
                    _ => None,
                };
                let opts = GroupOptions {
                    timeout: Duration::from_secs(self.dist_timeout),
                    cuda_device,
                    cuda_backend,
                };
                Group::connect(l, &opts)?
            }
        };
        let group = ssl_dist::init_world(group)?;
        ssl_core::modules::set_sync_batch_norm(self.sync_bn);
        seed_everything(self.seed);
        Ok(Run { device, group, seed: self.seed })
    }

    /// The device: `--device`, where `auto` and `cuda` become
    /// `cuda:LOCAL_RANK` on a rank of a multi-process run.
    fn device_for(&self, local_rank: Option<usize>) -> Result<Device> {
        let name = self.device.trim().to_ascii_lowercase();
        let Some(local) = local_rank else { return parse_device(&name) };
        let cuda = tch::Cuda::is_available();
        match name.as_str() {
            "auto" if !cuda => Ok(Device::Cpu),
            "auto" | "cuda" | "gpu" => parse_device(&format!("cuda:{local}")).map_err(|e| {
                Error::Config(format!(
                    "{e}: with several ranks on a machine, each rank takes the GPU of its LOCAL_RANK ({local}); \
                     start at most as many ranks per machine as it has GPUs, or pass --dist-backend gloo with an \
                     explicit --device cuda:N to share one"
                ))
            }),
            other => parse_device(other),
        }
    }

    /// `--checkpoint-every`, or the binary's default.
    pub fn checkpoint_every_or(&self, default: usize) -> usize {
        self.checkpoint_every.unwrap_or(default)
    }
}

//! Parsing `--device auto|cpu|cuda|cuda:N` and seeding.

use crate::{Error, Result};
use tch::Device;

/// Parses a device name: `auto` (CUDA 0 when available, else CPU), `cpu`,
/// `cuda` (device 0) or `cuda:N`. Asking for CUDA where there is none is an
/// error, not a silent fallback.
pub fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    let device =
        match name.as_str() {
            "auto" => return Ok(Device::cuda_if_available()),
            "cpu" => Device::Cpu,
            "cuda" | "gpu" => Device::Cuda(0),
            other => match other.strip_prefix("cuda:") {
                Some(n) => Device::Cuda(n.parse().map_err(|_| {
                    Error::Config(format!("device `{name}`: expected cuda:N with N a number"))
                })?),
                None => {
                    return Err(Error::Config(format!(
                        "unknown device `{name}`; expected auto, cpu, cuda or cuda:N"
                    )))
                }
            },
        };
    if let Device::Cuda(i) = device {
        let count = tch::Cuda::device_count();
        if (i as i64) >= count {
            return Err(Error::Config(format!(
                "device `{name}` asked for, but libtorch sees {count} CUDA device(s)"
            )));
        }
    }
    Ok(device)
}

/// A short name for reports: `cpu` or `cuda:N`.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
        _ => "cpu".into(),
    }
}

/// Keeps freed memory in the process's heap instead of giving it back to
/// the kernel (glibc's `mallopt`: no `mmap` for large blocks, no trimming).
/// libtorch frees and allocates every activation at every step; with
/// glibc's defaults the large ones are fresh `mmap`s, so each step faults
/// its pages in again, which took about a third of a SimCLR step on the
/// CPU (`docs/benchmarks.md`). Afterwards the process stays resident at its
/// peak (a SimCLR step's peak rose from 2.1 to 3.5 GB on the CPU). The
/// `train-*` binaries call it first thing, and so do the benches of
/// `benches/`; `SSL_RS_KEEP_FREED_MEMORY=0` in the environment turns it
/// off. Linux with glibc only; returns whether both settings took effect.
#[allow(unsafe_code)]
pub fn retain_freed_memory() -> bool {
    if std::env::var("SSL_RS_KEEP_FREED_MEMORY").is_ok_and(|v| v == "0") {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only sets two of the allocator's parameters;
        // any value is valid for both (glibc returns 0 when it refuses one).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Seeds libtorch's CPU and CUDA generators.
pub fn seed_everything(seed: u64) {
    tch::manual_seed(seed as i64);
    if tch::Cuda::is_available() {
        tch::Cuda::manual_seed_all(seed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_device("CPU").unwrap(), Device::Cpu);
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
        // A device index libtorch does not have is refused.
        assert!(parse_device("cuda:99").is_err());
        let auto = parse_device("auto").unwrap();
        assert_eq!(auto.is_cuda(), tch::Cuda::is_available());
    }
}

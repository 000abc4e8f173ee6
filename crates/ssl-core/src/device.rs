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

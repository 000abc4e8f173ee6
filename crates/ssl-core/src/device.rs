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

/// How large CPU blocks are allocated, chosen by `$SSL_RS_CPU_ALLOCATOR`
/// in [`tune_cpu_allocator`].
///
/// libtorch frees and allocates every activation at every step. With
/// glibc's defaults the large ones are fresh `mmap`s, so each step faults
/// their pages in and the kernel zeroes them: about a third of a SimCLR
/// step on the CPU. Measured alone on 2 cores (`docs/benchmarks.md`, "The
/// allocator, again"):
///
/// | policy | SimCLR step | its peak RSS | BERT-small step | NT-Xent | log-mel |
/// |---|---:|---:|---:|---:|---:|
/// | `retain` | 2.13–2.21 s | 3.2–3.4 GB | 659 ms | 6.4 ms | 1.32 ms |
/// | `hugepages` | 2.42–2.54 s | 1.95 GB | 718 ms | 11.9 ms | 2.38 ms |
/// | `system` | 3.19 s | 2.09 GB | 805 ms | 9.5 ms | 1.87 ms |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuAllocator {
    /// `retain`, the default: glibc keeps freed blocks in the heap
    /// (`mallopt`: no `mmap` for large blocks, no trimming). The fastest
    /// everywhere, but the process stays resident at its heap's peak,
    /// which fragmentation raises (a SimCLR step's from 2.1 to 3.4 GB).
    /// Linux with glibc only (elsewhere the default is `system`).
    Retain,
    /// `hugepages`: libtorch aligns blocks of 2 MiB and more to 2 MiB and
    /// asks for transparent huge pages (its own `THP_MEM_ALLOC_ENABLE`),
    /// so a large block faults in 512 times less often and the peak stays
    /// the live set's; blocks just above 2 MiB cost a whole huge page
    /// each time, which makes small steps slower than `system`. Needs
    /// `/sys/kernel/mm/transparent_hugepage/enabled` at `always` or
    /// `madvise`; elsewhere it changes nothing.
    HugePages,
    /// `system`: the allocators' defaults, nothing changed.
    System,
}

impl CpuAllocator {
    /// The policy `$SSL_RS_CPU_ALLOCATOR` names; unset is `retain`.
    pub fn parse(value: Option<&str>) -> Result<Self> {
        Ok(match value {
            None | Some("retain") => Self::Retain,
            Some("hugepages") => Self::HugePages,
            Some("system") => Self::System,
            Some(other) => {
                return Err(Error::Config(format!(
                    "SSL_RS_CPU_ALLOCATOR={other:?} is not a CPU allocator policy (expected hugepages, retain or system)"
                )))
            }
        })
    }

    /// Its name in `$SSL_RS_CPU_ALLOCATOR`.
    pub fn name(self) -> &'static str {
        match self {
            Self::HugePages => "hugepages",
            Self::Retain => "retain",
            Self::System => "system",
        }
    }
}

/// Applies `$SSL_RS_CPU_ALLOCATOR` (`retain`, the default; `hugepages`;
/// `system`: see [`CpuAllocator`]) and returns the policy in effect. It must
/// run before libtorch allocates its first large CPU block, which reads the
/// setting once: the `train-*` binaries call it first thing, and so do the
/// benches of `benches/`. It sets `THP_MEM_ALLOC_ENABLE` in this process's
/// environment for `hugepages`, unless the caller set that variable; call
/// it before starting threads. An unknown name is an error naming it, and
/// so is `retain` without glibc (unset, it falls back to `system` there).
#[allow(unsafe_code)]
pub fn tune_cpu_allocator() -> Result<CpuAllocator> {
    let asked = std::env::var("SSL_RS_CPU_ALLOCATOR").ok();
    let policy = CpuAllocator::parse(asked.as_deref())?;
    match policy {
        CpuAllocator::HugePages => {
            if std::env::var_os("THP_MEM_ALLOC_ENABLE").is_none() {
                std::env::set_var("THP_MEM_ALLOC_ENABLE", "1");
            }
        }
        CpuAllocator::Retain => {
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: `mallopt` only sets two of the allocator's
            // parameters; any value is valid for both (glibc returns 0 when
            // it refuses one).
            let applied = unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX) == 1
                    && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
            };
            #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
            let applied = false;
            if !applied {
                // The default falls back where glibc is missing; asking
                // for it by name there is an error.
                if asked.is_none() {
                    return Ok(CpuAllocator::System);
                }
                return Err(Error::Config(
                    "SSL_RS_CPU_ALLOCATOR=retain needs glibc's mallopt, which refused or is missing here"
                        .into(),
                ));
            }
        }
        CpuAllocator::System => {}
    }
    Ok(policy)
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
    fn cpu_allocator_policies_parse_by_name() {
        assert_eq!(CpuAllocator::parse(None).unwrap(), CpuAllocator::Retain);
        for p in [CpuAllocator::HugePages, CpuAllocator::Retain, CpuAllocator::System] {
            assert_eq!(CpuAllocator::parse(Some(p.name())).unwrap(), p);
        }
        let err = CpuAllocator::parse(Some("jemalloc")).unwrap_err().to_string();
        assert!(err.contains("\"jemalloc\"") && err.contains("SSL_RS_CPU_ALLOCATOR"), "{err}");
    }

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

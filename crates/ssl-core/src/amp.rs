//! Mixed precision: bf16 autocast on CUDA.
//!
//! tch's [`tch::autocast`] turns autocast on but has no way to pick its
//! dtype, which libtorch defaults to fp16 on CUDA. bf16 needs no loss
//! scaling, so we set libtorch's CUDA autocast dtype to bf16 through
//! `at::autocast::set_autocast_dtype`, a C++ function exported by
//! `libtorch_cpu.so` (PyTorch ≥ 2.4), called by its mangled name. Both enum
//! arguments are `int8_t`-backed in libtorch (`c10::DeviceType`,
//! `c10::ScalarType`), so the C ABI matches. The project pins libtorch 2.11.

#![allow(unsafe_code)]

use tch::{Kind, Tensor};

/// `c10::DeviceType::CUDA`.
const DEVICE_CUDA: i8 = 1;
/// `c10::DeviceType::CPU`.
const DEVICE_CPU: i8 = 0;

extern "C" {
    #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
    fn at_set_autocast_dtype(device: i8, dtype: i8);
    #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
    fn at_get_autocast_dtype(device: i8) -> i8;
}

/// The `c10::ScalarType` code of a kind (only the float kinds autocast uses).
fn scalar_type(kind: Kind) -> i8 {
    match kind {
        Kind::Half => 5,
        Kind::Float => 6,
        Kind::BFloat16 => 15,
        other => panic!("autocast dtype must be Half, Float or BFloat16, not {other:?}"),
    }
}

/// `x` in f32 when it is f16 or bf16 (as under autocast), else as it is
/// (f64 stays f64, for the gradient tests): where losses, BatchNorm
/// statistics and resampling compute in at least f32, as PyTorch's
/// autocast does for reductions and `log_softmax`.
pub fn at_least_f32(x: &Tensor) -> Tensor {
    match x.kind() {
        Kind::Half | Kind::BFloat16 => x.to_kind(Kind::Float),
        _ => x.shallow_clone(),
    }
}

/// The dtype autocast uses on CUDA (`cuda == true`) or the CPU.
pub fn autocast_dtype(cuda: bool) -> i8 {
    // SAFETY: a plain libtorch getter taking and returning int8-backed enums.
    unsafe { at_get_autocast_dtype(if cuda { DEVICE_CUDA } else { DEVICE_CPU }) }
}

/// Sets the dtype autocast uses on CUDA (`cuda == true`) or the CPU.
pub fn set_autocast_dtype(cuda: bool, kind: Kind) {
    let code = scalar_type(kind);
    // SAFETY: a plain libtorch setter taking int8-backed enums by value.
    unsafe { at_set_autocast_dtype(if cuda { DEVICE_CUDA } else { DEVICE_CPU }, code) }
}

/// Runs `f` under bf16 autocast when `enabled` and CUDA is available;
/// otherwise runs it as is.
pub fn bf16_autocast<T>(enabled: bool, f: impl FnOnce() -> T) -> T {
    if !enabled || !tch::Cuda::is_available() {
        return f();
    }
    set_autocast_dtype(true, Kind::BFloat16);
    tch::autocast(true, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autocast_dtype_round_trips_through_libtorch() {
        // The CPU setting is harmless to change in a test and proves the
        // symbols resolve and the enum codes are right.
        let before = autocast_dtype(false);
        set_autocast_dtype(false, Kind::Half);
        assert_eq!(autocast_dtype(false), 5);
        set_autocast_dtype(false, Kind::BFloat16);
        assert_eq!(autocast_dtype(false), 15);
        unsafe { at_set_autocast_dtype(DEVICE_CPU, before) };
    }
}

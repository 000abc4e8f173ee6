//! libtorch's multi-tensor optimizer kernels (`_fused_adamw_`,
//! `_fused_sgd_`, `_foreach_norm`), which tch does not bind, through the
//! small C++ shim in `shim/fused.cpp`. One call updates every parameter of
//! a group, where the per-tensor path launches about ten kernels per
//! parameter: on a GPU that launch overhead, not the arithmetic, bounds the
//! optimizer step of a transformer with a few hundred parameter tensors.
#![allow(unsafe_code)] // the FFI to the shim; each block says why it is sound

use std::ffi::{c_char, c_void, CStr};
use tch::Tensor;

extern "C" {
    fn ssl_fused_free(msg: *mut c_char);
    fn ssl_fused_adamw(
        params: *const *mut c_void,
        grads: *const *mut c_void,
        exp_avg: *const *mut c_void,
        exp_avg_sq: *const *mut c_void,
        n: usize,
        step: *mut c_void,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> *mut c_char;
    fn ssl_fused_sgd(
        params: *const *mut c_void,
        grads: *const *mut c_void,
        bufs: *const *mut c_void,
        n: usize,
        weight_decay: f64,
        momentum: f64,
        lr: f64,
        nesterov: bool,
    ) -> *mut c_char;
    fn ssl_foreach_norm(ts: *const *mut c_void, n: usize, out: *mut c_void) -> *mut c_char;
}

fn ptrs(ts: &[&Tensor]) -> Vec<*mut c_void> {
    ts.iter().map(|t| t.as_ptr() as *mut c_void).collect()
}

fn check(msg: *mut c_char) -> Result<(), String> {
    if msg.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null result is a NUL-terminated string malloc'd by the
    // shim, read once and freed by the shim's own free.
    let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy().trim().to_string();
    unsafe { ssl_fused_free(msg) };
    Err(text)
}

/// AdamW (decoupled decay, no AMSGrad) on `params` in one call, as
/// `torch.optim.AdamW(fused=True)`: `step` is a 0-d f32 tensor on the
/// parameters' device holding the step number (from 1).
///
/// # Shapes
/// `params[i]`, `grads[i]`, `exp_avg[i]`, `exp_avg_sq[i]` of one shape each
#[allow(clippy::too_many_arguments)]
pub(crate) fn adamw(
    params: &[&Tensor],
    grads: &[&Tensor],
    exp_avg: &[&Tensor],
    exp_avg_sq: &[&Tensor],
    step: &Tensor,
    lr: f64,
    (beta1, beta2, eps): (f64, f64, f64),
    weight_decay: f64,
) -> Result<(), String> {
    let n = params.len();
    assert!(grads.len() == n && exp_avg.len() == n && exp_avg_sq.len() == n, "one state per parameter");
    let (p, g, m, v) = (ptrs(params), ptrs(grads), ptrs(exp_avg), ptrs(exp_avg_sq));
    // SAFETY: every pointer is a live tch tensor handle (`at::Tensor*`)
    // borrowed for the call, and each array holds `n` of them.
    check(unsafe {
        ssl_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            n,
            step.as_ptr() as *mut c_void,
            lr,
            beta1,
            beta2,
            weight_decay,
            eps,
        )
    })
}

/// SGD with momentum (no dampening) and L2 weight decay on `params` in one
/// call, as `torch.optim.SGD(fused=True)`; `bufs` are the momentum buffers
/// (zeros before the first step).
pub(crate) fn sgd(
    params: &[&Tensor],
    grads: &[&Tensor],
    bufs: &[&Tensor],
    lr: f64,
    (momentum, nesterov): (f64, bool),
    weight_decay: f64,
) -> Result<(), String> {
    let n = params.len();
    assert!(grads.len() == n && bufs.len() == n, "one buffer per parameter");
    let (p, g, b) = (ptrs(params), ptrs(grads), ptrs(bufs));
    // SAFETY: as in `adamw`.
    check(unsafe {
        ssl_fused_sgd(p.as_ptr(), g.as_ptr(), b.as_ptr(), n, weight_decay, momentum, lr, nesterov)
    })
}

/// The L2 norm of `ts` together (non-empty, on one device), as a 0-d f32
/// tensor on their device.
pub(crate) fn global_norm(ts: &[&Tensor]) -> Result<Tensor, String> {
    let out = Tensor::zeros([], (tch::Kind::Float, ts[0].device()));
    let t = ptrs(ts);
    // SAFETY: as in `adamw`; `out` is a live tensor the shim copies into.
    check(unsafe { ssl_foreach_norm(t.as_ptr(), t.len(), out.as_ptr() as *mut c_void) })?;
    Ok(out)
}

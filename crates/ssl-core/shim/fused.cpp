// libtorch's multi-tensor optimizer kernels, which tch does not bind (their
// arguments are tensor lists): `_fused_adamw_`, `_fused_sgd_` and
// `_foreach_norm`, as torch.optim uses them with `fused=True` and
// `clip_grad_norm_` with `foreach=True`. Tensors cross as `at::Tensor*`
// (tch's tensor handle); each function returns NULL, or a malloc'd message
// that the caller frees with `ssl_fused_free`.
#include <ATen/core/Tensor.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/_fused_sgd.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/stack.h>
#include <c10/util/Exception.h>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

std::vector<at::Tensor> list(void** ts, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; i++) out.push_back(*static_cast<at::Tensor*>(ts[i]));
  return out;
}

char* message(const char* what) {
  char* m = static_cast<char*>(std::malloc(std::strlen(what) + 1));
  if (m) std::strcpy(m, what);
  return m;
}

template <class F>
char* guard(F f) {
  try {
    f();
    return nullptr;
  } catch (const c10::Error& e) {
    return message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return message(e.what());
  }
}

}  // namespace

extern "C" {

void ssl_fused_free(char* msg) { std::free(msg); }

// AdamW on n parameters at once. `step` is a 0-d f32 tensor on the
// parameters' device holding the step number (from 1) that the bias
// corrections use; every parameter reads the same one.
char* ssl_fused_adamw(void** params, void** grads, void** exp_avg, void** exp_avg_sq, size_t n, void* step,
                      double lr, double beta1, double beta2, double weight_decay, double eps) {
  return guard([&] {
    auto s = *static_cast<at::Tensor*>(step);
    std::vector<at::Tensor> steps(n, s);
    at::_fused_adamw_(list(params, n), list(grads, n), list(exp_avg, n), list(exp_avg_sq, n), {}, steps, lr, beta1,
                      beta2, weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
  });
}

// SGD with momentum (heavy ball or Nesterov, no dampening) and L2 weight
// decay on n parameters at once; `bufs` are the momentum buffers, which
// start at zero (so the first step's buffer is the gradient, as
// torch.optim.SGD's).
char* ssl_fused_sgd(void** params, void** grads, void** bufs, size_t n, double weight_decay, double momentum,
                    double lr, bool nesterov) {
  return guard([&] {
    auto b = momentum != 0.0 ? list(bufs, n) : std::vector<at::Tensor>();
    at::_fused_sgd_(list(params, n), list(grads, n), b, weight_decay, momentum, lr, /*dampening=*/0.0, nesterov,
                    /*maximize=*/false, /*is_first_step=*/false);
  });
}

// The L2 norm of n tensors together, copied into `out` (a 0-d tensor on
// their device).
char* ssl_foreach_norm(void** ts, size_t n, void* out) {
  return guard([&] {
    auto norms = at::_foreach_norm(list(ts, n), 2);
    for (auto& t : norms) t = t.to(at::kFloat);
    static_cast<at::Tensor*>(out)->copy_(at::linalg_vector_norm(at::stack(norms), 2));
  });
}

}  // extern "C"

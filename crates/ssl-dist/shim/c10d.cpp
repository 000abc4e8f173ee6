// A C ABI over torch's c10d (the layer under torch.distributed and PyTorch
// DDP), for ssl-dist's safe Rust API. Everything that can throw is caught
// here: a function returns NULL on success or a malloc'ed message (freed by
// ssl_free) naming what failed. Tensors cross the boundary as `at::Tensor*`,
// which is what tch's `Tensor::as_ptr` hands out.
//
// Gloo types stay behind torch's own shared_ptrs: the gloo headers come from
// Debian's libgloo-dev (the torch wheel ships none), an older gloo than the
// one built into libtorch_cpu, so this file never constructs, subclasses or
// reads the fields of a gloo class.

#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#ifdef SSL_DIST_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace {

char* dup(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

// Runs `body`, turning any exception into a message.
template <typename F>
char* guarded(F&& body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& e) {
    return dup(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return dup(e.what());
  } catch (...) {
    return dup("unknown C++ exception");
  }
}

std::chrono::milliseconds ms(int64_t v) {
  return std::chrono::milliseconds(v);
}

}  // namespace

struct SslStore {
  c10::intrusive_ptr<c10d::Store> store;
};

struct SslGroup {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  int rank;
  int size;
};

struct SslReducer {
  std::unique_ptr<c10d::Reducer> reducer;
};

extern "C" {

void ssl_free(void* p) {
  std::free(p);
}

// ---- store ------------------------------------------------------------

// A TCPStore client of host:port (the server when `is_server`), wrapped in a
// PrefixStore when `prefix` is not empty. A server with `wait_workers` waits
// until `world` clients have connected (or the timeout passes).
char* ssl_store_new(const char* host, uint16_t port, int is_server, int world, int wait_workers,
                    const char* prefix, int64_t timeout_ms, SslStore** out) {
  return guarded([&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server != 0;
    opts.numWorkers = static_cast<size_t>(world);
    opts.waitWorkers = wait_workers != 0;
    opts.timeout = ms(timeout_ms);
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    if (prefix != nullptr && prefix[0] != '\0') {
      store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store);
    }
    *out = new SslStore{store};
  });
}

void ssl_store_free(SslStore* s) {
  delete s;
}

char* ssl_store_set(SslStore* s, const char* key, const uint8_t* data, size_t len) {
  return guarded([&] { s->store->set(std::string(key), std::vector<uint8_t>(data, data + len)); });
}

// Waits for `key` up to the store's timeout; the value is malloc'ed.
char* ssl_store_get(SslStore* s, const char* key, uint8_t** data, size_t* len) {
  return guarded([&] {
    auto v = s->store->get(std::string(key));
    *len = v.size();
    *data = static_cast<uint8_t*>(std::malloc(v.empty() ? 1 : v.size()));
    if (!v.empty()) {
      std::memcpy(*data, v.data(), v.size());
    }
  });
}

char* ssl_store_add(SslStore* s, const char* key, int64_t delta, int64_t* out) {
  return guarded([&] { *out = s->store->add(std::string(key), delta); });
}

char* ssl_store_set_timeout(SslStore* s, int64_t timeout_ms) {
  return guarded([&] { s->store->setTimeout(ms(timeout_ms)); });
}

// ---- process group ----------------------------------------------------

// A process group over `store` with Gloo for CPU tensors and, when
// `cuda_device >= 0`, NCCL (`use_nccl`, needs a build with NCCL) or Gloo
// (which stages CUDA tensors through the host) for CUDA tensors. Gloo binds to the
// interface `iface` when given, else to the address `host` when given, else
// to the address of this machine's hostname (torch's default).
char* ssl_group_new(SslStore* s, int rank, int size, int64_t timeout_ms, const char* iface,
                    const char* host, int cuda_device, int use_nccl, SslGroup** out) {
  return guarded([&] {
    auto pg = c10::make_intrusive<c10d::ProcessGroup>(s->store, rank, size);
    auto opts = c10d::ProcessGroupGloo::Options::create(ms(timeout_ms));
    if (iface != nullptr && iface[0] != '\0') {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(std::string(iface)));
    } else if (host != nullptr && host[0] != '\0') {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(std::string(host)));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    auto cpu_store = c10::make_intrusive<c10d::PrefixStore>("cpu/", s->store);
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(cpu_store, rank, size, opts);
    pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
    pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    if (cuda_device >= 0 && !use_nccl) {
      pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::GLOO, gloo);
    }
#ifdef SSL_DIST_NCCL
    if (cuda_device >= 0 && use_nccl) {
      auto nccl_opts = c10d::ProcessGroupNCCL::Options::create();
      nccl_opts->timeout = ms(timeout_ms);
      auto cuda_store = c10::make_intrusive<c10d::PrefixStore>("cuda/", s->store);
      auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(cuda_store, rank, size, nccl_opts);
      pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
      pg->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
    }
#else
    if (cuda_device >= 0 && use_nccl) {
      throw std::runtime_error(
          "CUDA tensors need the NCCL backend: this build of ssl-dist has no `nccl` feature "
          "(cargo xtask turns it on on machines with a CUDA device)");
    }
#endif
    *out = new SslGroup{pg, rank, size};
  });
}

void ssl_group_free(SslGroup* g) {
  delete g;
}

int ssl_has_nccl() {
#ifdef SSL_DIST_NCCL
  return 1;
#else
  return 0;
#endif
}

// ---- collectives (blocking) ---------------------------------------------

static c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case 0:
      return c10d::ReduceOp::SUM;
    case 1:
      return c10d::ReduceOp::MAX;
    case 2:
      return c10d::ReduceOp::MIN;
    default:
      throw std::runtime_error("unknown reduce op " + std::to_string(op));
  }
}

char* ssl_all_reduce(SslGroup* g, at::Tensor* t, int op) {
  return guarded([&] {
    std::vector<at::Tensor> ts{*t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = reduce_op(op);
    g->pg->allreduce(ts, opts)->wait();
  });
}

char* ssl_broadcast(SslGroup* g, at::Tensor* t, int root) {
  return guarded([&] {
    std::vector<at::Tensor> ts{*t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    g->pg->broadcast(ts, opts)->wait();
  });
}

char* ssl_barrier(SslGroup* g) {
  return guarded([&] { g->pg->barrier()->wait(); });
}

// `out` holds `size` blocks of `in`'s shape along dimension 0, in rank order.
char* ssl_all_gather(SslGroup* g, at::Tensor* out, at::Tensor* in) {
  return guarded([&] { g->pg->_allgather_base(*out, *in)->wait(); });
}

// `in` holds `size` blocks of `out`'s shape along dimension 0; block k,
// reduced over the ranks, lands in rank k's `out`.
char* ssl_reduce_scatter(SslGroup* g, at::Tensor* out, at::Tensor* in, int op) {
  return guarded([&] {
    c10d::ReduceScatterOptions opts;
    opts.reduceOp = reduce_op(op);
    g->pg->_reduce_scatter_base(*out, *in, opts)->wait();
  });
}

char* ssl_broadcast_coalesced(SslGroup* g, at::Tensor** ts, size_t n, int root, size_t buffer_bytes) {
  return guarded([&] {
    std::vector<at::Tensor> tensors;
    for (size_t i = 0; i < n; ++i) {
      tensors.push_back(*ts[i]);
    }
    c10d::broadcast_coalesced(g->pg, tensors, buffer_bytes, root);
  });
}

// ---- differentiable collectives ------------------------------------------

namespace {

SslGroup* group_of(torch::autograd::AutogradContext* ctx) {
  return reinterpret_cast<SslGroup*>(ctx->saved_data["group"].toInt());
}

// Forward: all-gather along dimension 0. Backward: the gradient of the
// gathered tensor, reduced (summed) over the ranks, each rank keeping the
// block of its own input: every rank's loss reaches every input.
struct AllGatherGrad : public torch::autograd::Function<AllGatherGrad> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t group) {
    auto* g = reinterpret_cast<SslGroup*>(group);
    ctx->saved_data["group"] = group;
    auto in = x.contiguous();
    auto sizes = in.sizes().vec();
    sizes[0] *= g->size;
    auto out = at::empty(sizes, in.options());
    g->pg->_allgather_base(out, in)->wait();
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* g = group_of(ctx);
    auto grad = grads[0].contiguous();
    auto sizes = grad.sizes().vec();
    sizes[0] /= g->size;
    auto out = at::empty(sizes, grad.options());
    c10d::ReduceScatterOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    g->pg->_reduce_scatter_base(out, grad, opts)->wait();
    return {out, at::Tensor()};
  }
};

// Forward: all-reduce (sum). Backward: all-reduce (sum) of the gradient.
struct AllReduceGrad : public torch::autograd::Function<AllReduceGrad> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t group) {
    auto* g = reinterpret_cast<SslGroup*>(group);
    ctx->saved_data["group"] = group;
    auto out = x.clone(at::MemoryFormat::Contiguous);
    std::vector<at::Tensor> ts{out};
    g->pg->allreduce(ts)->wait();
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* g = group_of(ctx);
    auto grad = grads[0].clone(at::MemoryFormat::Contiguous);
    std::vector<at::Tensor> ts{grad};
    g->pg->allreduce(ts)->wait();
    return {grad, at::Tensor()};
  }
};

}  // namespace

char* ssl_all_gather_grad(SslGroup* g, at::Tensor* in, at::Tensor** out) {
  return guarded([&] {
    *out = new at::Tensor(AllGatherGrad::apply(*in, reinterpret_cast<int64_t>(g)));
  });
}

char* ssl_all_reduce_grad(SslGroup* g, at::Tensor* in, at::Tensor** out) {
  return guarded([&] {
    *out = new at::Tensor(AllReduceGrad::apply(*in, reinterpret_cast<int64_t>(g)));
  });
}

// ---- gradient synchronisation (the DDP Reducer) ---------------------------

// A Reducer over `params`: their gradients are averaged over the ranks in
// buckets of about `bucket_bytes`, each bucket's all-reduce launched as soon
// as backward has produced all of its gradients. As PyTorch DDP, the first
// iteration uses one bucket and the buckets are rebuilt in the order the
// gradients arrived.
char* ssl_reducer_new(SslGroup* g, at::Tensor** params, const char** names, size_t n, int64_t bucket_bytes,
                      int find_unused, SslReducer** out) {
  return guarded([&] {
    std::vector<at::Tensor> ps;
    std::unordered_map<size_t, std::string> param_names;
    for (size_t i = 0; i < n; ++i) {
      ps.push_back(*params[i]);
      param_names[i] = std::string(names[i]);
    }
    std::vector<bool> sparse(n, false);
    std::vector<size_t> limits{find_unused ? static_cast<size_t>(bucket_bytes)
                                           : std::numeric_limits<size_t>::max()};
    auto assignment = c10d::compute_bucket_assignment_by_size(ps, limits, sparse);
    auto buckets = std::get<0>(assignment);
    std::reverse(buckets.begin(), buckets.end());
    auto reducer = std::make_unique<c10d::Reducer>(ps, buckets, g->pg, sparse, bucket_bytes, find_unused != 0,
                                                   /*gradient_as_bucket_view=*/false, param_names,
                                                   /*first_bucket_bytes_cap=*/1024 * 1024,
                                                   /*skip_all_reduce_unused_params=*/false,
                                                   /*use_python_reducer=*/false,
                                                   /*bucket_bytes_cap_list=*/std::vector<int64_t>{});
    *out = new SslReducer{std::move(reducer)};
  });
}

// Before a forward pass whose backward synchronises: rebuilds the buckets
// once (after the first iteration), as DDP's forward does.
char* ssl_reducer_prepare_forward(SslReducer* r) {
  return guarded([&] {
    r->reducer->prepare_for_forward();
    r->reducer->rebuild_buckets();
  });
}

// Arms the gradient hooks for the next backward pass; `outputs` are used to
// find parameters that get no gradient when the reducer was built with
// `find_unused`.
char* ssl_reducer_prepare_backward(SslReducer* r, at::Tensor** outputs, size_t n) {
  return guarded([&] {
    std::vector<at::Tensor> outs;
    for (size_t i = 0; i < n; ++i) {
      outs.push_back(*outputs[i]);
    }
    r->reducer->prepare_for_backward(outs);
  });
}

char* ssl_reducer_free(SslReducer* r) {
  return guarded([&] { delete r; });
}

}  // extern "C"

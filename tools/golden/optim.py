"""Golden fixtures for optimizers: torch SGD (plain / Nesterov), torch AdamW, lightly LARS,
solo-learn's LARS with clip_lr (solo-learn 1.0.2 from PyPI, installed with --no-deps: its
package __init__ imports lightning, so solo/utils/lars.py is loaded as a file).

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/optim.py
Writes crates/ssl-core/tests/fixtures/optim.safetensors (all float64).

Keys: init.W (4,5), init.b (5,), grads.W.{0,1,2}, grads.b.{0,1,2};
      <opt>.W.{1,2,3}, <opt>.b.{1,2,3} = params after step k, for
      opt in {sgd, sgd_nesterov, adamw, lars, lars_solo, lars_solo_clipped}. Grads are set by hand (p.grad = g.clone()).
"""
import importlib.util
from pathlib import Path

import torch
from lightly.utils.lars import LARS
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/ssl-core/tests/fixtures/optim.safetensors"

torch.manual_seed(0)
W0 = torch.randn(4, 5, dtype=torch.float64)
b0 = 0.1 * torch.randn(5, dtype=torch.float64)
gW = [torch.randn(4, 5, dtype=torch.float64) for _ in range(3)]
gb = [torch.randn(5, dtype=torch.float64) for _ in range(3)]

out = {"init.W": W0.clone(), "init.b": b0.clone()}
for i in range(3):
    out[f"grads.W.{i}"], out[f"grads.b.{i}"] = gW[i].clone(), gb[i].clone()


def run(name, make_opt):
    W = torch.nn.Parameter(W0.clone())
    b = torch.nn.Parameter(b0.clone())
    opt = make_opt(W, b)
    for i in range(3):
        W.grad, b.grad = gW[i].clone(), gb[i].clone()
        opt.step()
        out[f"{name}.W.{i + 1}"] = W.detach().clone()
        out[f"{name}.b.{i + 1}"] = b.detach().clone()


# foreach=False: the plain per-parameter loop (same math as the foreach path).
run("sgd", lambda W, b: torch.optim.SGD(
    [W, b], lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=False, foreach=False))
run("sgd_nesterov", lambda W, b: torch.optim.SGD(
    [W, b], lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True, foreach=False))
run("adamw", lambda W, b: torch.optim.AdamW(
    [W, b], lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05, foreach=False))
# lightly LARS: a group with weight_decay == 0 skips BOTH weight decay and the LARS
# trust-ratio scaling (this is how lightly excludes biases / norm params; see
# lightly.models.utils.get_weight_decay_parameters, which splits by name 'bias' + norm layers).
run("lars", lambda W, b: LARS(
    [{"params": [W]}, {"params": [b], "weight_decay": 0.0}],
    lr=0.1, momentum=0.9, weight_decay=1e-4, trust_coefficient=0.001))


def solo_lars_module():
    import site
    for d in site.getsitepackages():
        path = Path(d) / "solo/utils/lars.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location("solo_lars", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
    raise SystemExit("solo-learn is not installed: pip install --no-deps solo-learn==1.0.2")


# solo-learn's CIFAR LARS (eta 0.02, clip_lr, exclude_bias_n_norm) over SGD with momentum,
# as its 1.0.2 wrapper composes it; at lr 1e-3 the clip min(ratio / lr, 1) binds.
SoloLars = solo_lars_module().LARSWrapper
for name, lr in [("lars_solo", 0.1), ("lars_solo_clipped", 1e-3)]:
    run(name, lambda W, b, lr=lr: SoloLars(
        torch.optim.SGD([W, b], lr=lr, momentum=0.9, weight_decay=1e-4, foreach=False),
        eta=0.02, clip=True, exclude_bias_n_norm=True))

OUT.parent.mkdir(parents=True, exist_ok=True)
save_file({k: v.contiguous() for k, v in out.items()}, str(OUT))
print(f"wrote {len(out)} tensors to {OUT}")

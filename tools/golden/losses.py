"""Golden fixtures for the SSL losses, from lightly's PyTorch reference losses.

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/losses.py
Writes crates/ssl-core/tests/fixtures/losses.safetensors.

Layout per loss `<name>`:
  inputs (`<name>.z0`, ...)   float32, exactly the values fed to the reference
  `<name>.loss`               float64, 0-dim; reference computed on the inputs upcast to float64
  `<name>.grad_<input>`       float64, d(loss)/d(input) via autograd (float64)
  `<name>.loss_f32`           float32, 0-dim; same loss computed in float32
"""
from pathlib import Path

import torch
import torch.nn.functional as F
from lightly.loss import (BarlowTwinsLoss, NegativeCosineSimilarity,
                          NTXentLoss, VICRegLoss)
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/ssl-core/tests/fixtures/losses.safetensors"

torch.manual_seed(0)
out = {}


def record(name, make_loss, inputs):
    """make_loss(dtype) -> callable(*tensors) -> scalar loss. inputs: dict of float32 tensors."""
    for k, v in inputs.items():
        out[f"{name}.{k}"] = v.contiguous()
    xs = [v.double().requires_grad_(True) for v in inputs.values()]
    loss = make_loss(torch.float64)(*xs)
    loss.backward()
    out[f"{name}.loss"] = loss.detach().clone()
    for k, x in zip(inputs, xs):
        g = x.grad if x.grad is not None else torch.zeros_like(x)
        out[f"{name}.grad_{k}"] = g.detach().clone()
    xs32 = [v.clone().requires_grad_(True) for v in inputs.values()]
    out[f"{name}.loss_f32"] = make_loss(torch.float32)(*xs32).detach().clone()
    print(f"{name:14s} shape={tuple(loss.shape)} loss={loss.item():.12g} "
          f"loss_f32={out[f'{name}.loss_f32'].item():.9g}")


# --- NT-Xent (SimCLR), no memory bank -------------------------------------
for t in (0.5, 0.1):
    z0 = torch.randn(8, 16)
    z1 = z0 + 0.5 * torch.randn(8, 16)  # correlated positives
    record(f"ntxent_t{t}", lambda dt, t=t: NTXentLoss(temperature=t),
           {"z0": z0, "z1": z1})

# --- MoCo InfoNCE against an external queue --------------------------------
# lightly: NTXentLoss(memory_bank_size=(K, D)); bank buffer stored as (K, D) rows,
# handed to the loss transposed as (D, K). q, k are L2-normalised by the loss;
# bank entries are NOT re-normalised on read, so we give an already-normalised queue.
q = torch.randn(8, 16)
k = q + 0.5 * torch.randn(8, 16)
queue = F.normalize(torch.randn(32, 16), dim=1)


def make_moco(dt):
    fn = NTXentLoss(temperature=0.2, memory_bank_size=(32, 16))
    fn.memory_bank.bank = queue.to(dt).clone()  # (K, D)
    return fn


def moco_paper(q, k, queue, t=0.2):
    # MoCo reference formula, used only to cross-check lightly.
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], 1) / t
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


record("infonce_queue", make_moco, {"q": q, "k": k})
out["infonce_queue.queue"] = queue.contiguous()
ref = moco_paper(q.double(), k.double(), queue.double())
assert torch.allclose(ref, out["infonce_queue.loss"], rtol=0, atol=1e-12), ref

# --- SimSiam negative cosine similarity ------------------------------------
x0 = torch.randn(8, 16)
x1 = x0 + torch.randn(8, 16)
record("negcos", lambda dt: NegativeCosineSimilarity(), {"x0": x0, "x1": x1})

# --- Barlow Twins ----------------------------------------------------------
z0 = torch.randn(16, 8)
z1 = z0 + 0.7 * torch.randn(16, 8)
record("barlow", lambda dt: BarlowTwinsLoss(lambda_param=5e-3),
       {"z0": z0, "z1": z1})

# --- VICReg (defaults: lambda=25, mu=25, nu=1, eps=1e-4) ---------------------
# per-column scales so some columns have std < 1 (hinge active) and some > 1.
scale = torch.linspace(0.3, 1.6, 8)
z0 = (torch.randn(16, 8) + 0.2) * scale
z1 = z0 + 0.5 * torch.randn(16, 8) * scale
record("vicreg", lambda dt: VICRegLoss(), {"z0": z0, "z1": z1})

# --- MoCo v3 in-batch InfoNCE (no lightly class: the paper's Algorithm 1) ---
# ctr(q, k) = 2 * tau * CE(normalize(q) @ normalize(k).T / tau, arange(N)).
def make_ctr(dt, t=0.2):
    def ctr(q, k):
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        return F.cross_entropy(q @ k.T / t, torch.arange(len(q))) * 2 * t
    return ctr


q = torch.randn(8, 16)
k = q + 2.0 * torch.randn(8, 16)  # noisy positives: a loss well above 0
record("infonce_inbatch", make_ctr, {"q": q, "k": k})

OUT.parent.mkdir(parents=True, exist_ok=True)
save_file(out, str(OUT))
print(f"wrote {len(out)} tensors to {OUT}")

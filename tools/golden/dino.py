"""Golden fixtures for DINO, from lightly 1.6.0 and torch.

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/dino.py
Writes crates/ssl-core/tests/fixtures/dino.safetensors, read by
crates/ssl-core/tests/dino_parity.rs.

- `loss.*`: lightly's DINOLoss on 2 teacher and 5 student views (2 global,
  3 local) with a non-zero centre and an explicit teacher temperature (1/16), in
  float64: the inputs, the loss, its gradient for each student view, and the
  centre after the update (`center_momentum` 0.9).
- `schedule`: DINOLoss's teacher temperature for epochs 0..7 with a 5-epoch
  warmup 0.04 -> 0.07 (its `epoch=` argument).
- `head.*` / `head_bn.*`: DINOProjectionHead (input 6, hidden 10, bottleneck
  5, 12 prototypes; without and with BatchNorm, train mode): the state dict,
  an input and the output, float64.
- `pos.*`: a [1, 1 + 7*7, 8] position embedding resampled to 3x3 and 9x9
  patch grids with F.interpolate(mode="bicubic", antialias=True,
  align_corners=False), what timm's resample_abs_pos_embed calls.
"""
from pathlib import Path

import torch
import torch.nn.functional as F
from lightly.loss import DINOLoss
from lightly.models.modules.heads import DINOProjectionHead
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/ssl-core/tests/fixtures/dino.safetensors"

torch.manual_seed(0)
out = {}

# The loss and the centre update.
B, K = 6, 16
teacher = [torch.randn(B, K, dtype=torch.float64) * 2 for _ in range(2)]
student = [torch.randn(B, K, dtype=torch.float64, requires_grad=True) for _ in range(5)]
loss_fn = DINOLoss(output_dim=K, center_momentum=0.9).double()
center = torch.randn(1, 1, K, dtype=torch.float64) * 0.3
loss_fn.center.copy_(center)
# 1/16: lightly makes the temperature a float32 tensor, so it must be exact in f32.
loss = loss_fn(teacher, student, teacher_temp=0.0625)
loss.backward()
for i, t in enumerate(teacher):
    out[f"loss.teacher{i}"] = t
for i, s in enumerate(student):
    out[f"loss.student{i}"] = s.detach()
    out[f"loss.grad_student{i}"] = s.grad
out["loss.center"] = center.reshape(1, K)
out["loss.loss"] = loss.detach()
out["loss.center_after"] = loss_fn.center.reshape(1, K).clone()

# The teacher-temperature warmup.
warm = DINOLoss(output_dim=K, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=5)
temps = []
for epoch in range(8):
    if epoch < warm.warmup_teacher_temp_epochs:
        temps.append(float(warm.teacher_temp_schedule[epoch]))
    else:
        temps.append(warm.teacher_temp)
out["schedule"] = torch.tensor(temps, dtype=torch.float64)

# The projection head.
for name, bn in [("head", False), ("head_bn", True)]:
    head = DINOProjectionHead(6, 10, 5, 12, batch_norm=bn).double().train()
    x = torch.randn(8, 6, dtype=torch.float64)
    with torch.no_grad():
        y = head(x)
    for k, v in head.state_dict().items():
        out[f"{name}.sd.{k}"] = v.contiguous()
    out[f"{name}.x"] = x
    out[f"{name}.y"] = y

# Position embeddings resampled to other grids.
pos = torch.randn(1, 1 + 49, 8, dtype=torch.float64)
out["pos.embed"] = pos
grid = pos[:, 1:].reshape(1, 7, 7, 8).permute(0, 3, 1, 2)
for n in (3, 9):
    r = F.interpolate(grid, size=(n, n), mode="bicubic", antialias=True, align_corners=False)
    out[f"pos.grid{n}"] = r.permute(0, 2, 3, 1).reshape(1, n * n, 8).contiguous()

OUT.parent.mkdir(parents=True, exist_ok=True)
save_file({k: v.contiguous() for k, v in out.items()}, str(OUT))
print(f"wrote {len(out)} tensors to {OUT}")

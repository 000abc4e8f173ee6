"""Golden fixtures for fine-tuning's regularisers, from timm 1.0.31.

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/finetune.py
Writes crates/ssl-core/tests/fixtures/finetune.safetensors, read by
crates/ssl-core/tests/finetune_parity.rs.

- `mix{k}.*` for k = 0..9: timm's `Mixup(mixup_alpha=0.8, cutmix_alpha=1.0,
  label_smoothing=0.1, num_classes=7)` in its per-batch mode on an input
  `x` [6, 2, 12, 10] (rectangular, so rows and columns cannot swap) and
  labels `y` [6] after `np.random.seed(k)`: the mixed input `out`, the
  soft targets `targets`, and the draws that made them (`lam_raw`: λ from
  the Beta, before CutMix's area correction; `cutmix`: 1 or 0; `cy`, `cx`:
  the box centre) so that the Rust side can replay them with its own
  random numbers.
- `ce.*`: timm's `SoftTargetCrossEntropy` on logits [6, 7] and the targets
  of `mix0`, and its gradient.
- `drop.*`: timm's `drop_path(x, 0.3, training=True)` on x [16, 3, 5]
  after `torch.manual_seed(11)` (one Bernoulli per sample from torch's
  generator, which the Rust side seeds the same way).

The ViT with stochastic depth is checked against timm's VisionTransformer
in tools/golden/backbones.py (`vit_drop_path`).
"""
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from timm.data.mixup import Mixup, rand_bbox
from timm.layers import drop_path
from timm.loss import SoftTargetCrossEntropy

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/ssl-core/tests/fixtures/finetune.safetensors"
CLASSES = 7


def mixer():
    return Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=CLASSES)


def mix_case(k, x, y):
    # The draws, replayed from the same seed in the order Mixup makes them.
    np.random.seed(k)
    m = mixer()
    lam, cutmix = m._params_per_batch()
    cy = cx = -1
    if cutmix:
        state = np.random.get_state()
        cy = int(np.random.randint(0, x.shape[-2]))
        cx = int(np.random.randint(0, x.shape[-1]))
        np.random.set_state(state)
        # The box timm draws next from the same state has that centre.
        yl, yh, xl, xh = rand_bbox(x.shape, lam)
        ch, cw = int(x.shape[-2] * np.sqrt(1 - lam)), int(x.shape[-1] * np.sqrt(1 - lam))
        assert yl == max(cy - ch // 2, 0) and xl == max(cx - cw // 2, 0)
    np.random.seed(k)
    out, targets = mixer()(x.clone(), y)
    return {
        f"mix{k}.out": out,
        f"mix{k}.targets": targets,
        f"mix{k}.lam_raw": torch.tensor([lam], dtype=torch.float64),
        f"mix{k}.cutmix": torch.tensor([int(cutmix)], dtype=torch.int64),
        f"mix{k}.cy": torch.tensor([cy], dtype=torch.int64),
        f"mix{k}.cx": torch.tensor([cx], dtype=torch.int64),
    }


def main():
    torch.manual_seed(0)
    x = torch.randn(6, 2, 12, 10)
    y = torch.tensor([0, 3, 6, 2, 2, 5])
    t = {"x": x, "y": y}
    kinds = []
    for k in range(10):
        case = mix_case(k, x, y)
        kinds.append(int(case[f"mix{k}.cutmix"]))
        t.update(case)
    assert 0 < sum(kinds) < len(kinds), f"want both CutMix and Mixup cases, got {kinds}"

    logits = torch.randn(6, CLASSES, dtype=torch.float64, requires_grad=True)
    targets = t["mix0.targets"].double()
    loss = SoftTargetCrossEntropy()(logits, targets)
    loss.backward()
    t.update({"ce.logits": logits.detach(), "ce.targets": targets, "ce.loss": loss.detach().reshape(1),
              "ce.grad": logits.grad})

    xd = torch.randn(16, 3, 5)
    torch.manual_seed(11)
    out = drop_path(xd, 0.3, training=True)
    dropped = int((out.abs().sum(dim=(1, 2)) == 0).sum())
    assert 0 < dropped < 16, dropped
    t.update({"drop.x": xd, "drop.out": out})

    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in t.items()}, str(OUT))
    print(f"wrote {OUT.relative_to(ROOT)}: CutMix in cases {kinds}, {dropped}/16 samples dropped")


if __name__ == "__main__":
    main()

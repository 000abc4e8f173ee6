"""Reference for `benches/src/bin/gpu-step.rs`: compute-only training steps
on a GPU (the batch already on the device) under bf16 autocast, in PyTorch
eager and with `torch.compile` (default mode) on the model.

- simclr: torchvision's ResNet-18 with the CIFAR stem (3x3 conv, no
  max-pool), a 512-2048-128 projection head with BatchNorm (lightly's
  SimCLRProjectionHead layout) and NT-Xent at temperature 0.5 written out,
  SGD; BATCH images of 32 px, two views each; channels-last as ssl-rs runs.
- mae: MAE with timm's ViT-S/16 blocks at 224 px (75% masked), the light
  decoder (2 blocks, width 384, 6 heads) and the per-patch normalised
  masked MSE, AdamW.
- bert: transformers' BertForMaskedLM, BERT-base, SDPA attention, 15% of
  128 positions labelled, AdamW.

Prints `RESULT {json}` per (case, mode) with the mean step time over the
timed steps after the warm-up (which holds the compilation), items per
second and, with --flops, the step's FLOPs counted by
torch.utils.flop_counter (eager, one step) and the fraction of the
H100/H200 dense bf16 peak (989 TFLOP/s) that the step time reaches.

    python3 gpu_step.py simclr mae bert --modes eager compile --flops
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F

BF16_PEAK = 989e12
DEV = "cuda"


def simclr(batch):
    import torchvision

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            b = torchvision.models.resnet18()
            b.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            b.maxpool = torch.nn.Identity()
            b.fc = torch.nn.Identity()
            self.backbone = b
            self.head = torch.nn.Sequential(
                torch.nn.Linear(512, 2048), torch.nn.BatchNorm1d(2048), torch.nn.ReLU(), torch.nn.Linear(2048, 128))

        def forward(self, x):
            z = F.normalize(self.head(self.backbone(x)).float(), dim=1)
            n = z.shape[0] // 2
            sim = z @ z.T / 0.5
            sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
            target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
            return F.cross_entropy(sim, target)

    model = Model().to(DEV).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-6)
    x = torch.randn(2 * batch, 3, 32, 32, device=DEV).to(memory_format=torch.channels_last)
    return model, opt, (x,), batch, "images"


def mae(batch):
    from timm.models.vision_transformer import Block, VisionTransformer

    class Mae(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vit = VisionTransformer(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6,
                                         num_classes=0)
            self.decoder_embed = torch.nn.Linear(384, 384)
            self.mask_token = torch.nn.Parameter(torch.zeros(1, 1, 384))
            self.decoder_pos_embed = torch.nn.Parameter(torch.zeros(1, 197, 384), requires_grad=False)
            self.decoder_blocks = torch.nn.ModuleList([Block(384, 6, 4.0, qkv_bias=True) for _ in range(2)])
            self.decoder_norm = torch.nn.LayerNorm(384, eps=1e-6)
            self.decoder_pred = torch.nn.Linear(384, 16 * 16 * 3)

        def forward(self, imgs):
            v = self.vit
            x = v.patch_embed(imgs) + v.pos_embed[:, 1:]
            b, n, d = x.shape
            keep = n // 4
            noise = torch.rand(b, n, device=x.device)
            ids_shuffle = torch.argsort(noise, dim=1)
            ids_restore = torch.argsort(ids_shuffle, dim=1)
            x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
            mask = torch.ones(b, n, device=x.device)
            mask[:, :keep] = 0
            mask = torch.gather(mask, 1, ids_restore)
            cls = (v.cls_token + v.pos_embed[:, :1]).expand(b, -1, -1)
            x = v.norm(v.blocks(torch.cat([cls, x], 1)))
            x = self.decoder_embed(x)
            y = torch.cat([x[:, 1:], self.mask_token.expand(b, n - keep, -1)], 1)
            y = torch.gather(y, 1, ids_restore[:, :, None].expand(-1, -1, d))
            y = torch.cat([x[:, :1], y], 1) + self.decoder_pos_embed
            for blk in self.decoder_blocks:
                y = blk(y)
            pred = self.decoder_pred(self.decoder_norm(y))[:, 1:].float()
            p = imgs.unfold(2, 16, 16).unfold(3, 16, 16)  # [B, C, 14, 14, 16, 16]
            target = p.permute(0, 2, 3, 4, 5, 1).reshape(b, n, -1)
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
            loss = ((pred - target) ** 2).mean(-1)
            return (loss * mask).sum() / mask.sum()

    model = Mae().to(DEV)
    opt = torch.optim.AdamW(model.parameters(), lr=1.5e-4, weight_decay=0.05)
    x = torch.randn(batch, 3, 224, 224, device=DEV)
    return model, opt, (x,), batch, "images"


def bert(batch):
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(vocab_size=30522)
    cfg._attn_implementation = "sdpa"
    model = BertForMaskedLM(cfg).to(DEV)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    ids = torch.randint(1000, 30000, (batch, 128), device=DEV)
    labels = torch.where(torch.rand(batch, 128, device=DEV) < 0.15, ids, torch.full_like(ids, -100))
    attn = torch.ones_like(ids)

    class Loss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, ids, attn, labels):
            return self.model(input_ids=ids, attention_mask=attn, labels=labels).loss

    return Loss(), opt, (ids, attn, labels), batch * 128, "tokens"


CASES = {"simclr": (simclr, 512), "mae": (mae, 128), "bert": (bert, 64)}


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def run(case, mode, batch, steps, flops):
    torch.manual_seed(0)
    make, default = CASES[case]
    model, opt, inputs, items, unit = make(batch or default)
    fn = torch.compile(model) if mode == "compile" else model

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(DEV, dtype=torch.bfloat16):
            loss = fn(*inputs)
        loss.backward()
        opt.step()
        return loss

    t0 = time.perf_counter()
    for _ in range(min(10, steps)):
        step()
    sync()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    value = loss.item()
    sync()
    secs = time.perf_counter() - t0
    out = {"side": f"pytorch-{mode}", "case": case, "batch": batch or default, "steps": steps,
           "step_ms": 1e3 * secs / steps, "per_s": items * steps / secs, "unit": unit, "loss": value,
           "warmup_s": warm, "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if DEV == "cuda" else None}
    if flops and mode == "eager":
        from torch.utils.flop_counter import FlopCounterMode
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        out["step_flops"] = counter.get_total_flops()
        out["bf16_peak_fraction"] = out["step_flops"] / (secs / steps) / BF16_PEAK
    print("RESULT " + json.dumps(out), flush=True)
    del model, opt, fn
    if DEV == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", nargs="+", choices=sorted(CASES))
    ap.add_argument("--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--flops", action="store_true")
    ap.add_argument("--device", default="cuda", help="cpu for a smoke test")
    ap.add_argument("--cudnn-benchmark", action="store_true")
    a = ap.parse_args()
    global DEV
    DEV = a.device
    torch.backends.cudnn.benchmark = a.cudnn_benchmark
    for case in a.cases:
        for mode in a.modes:
            try:
                run(case, mode, a.batch, a.steps, a.flops)
            except Exception as e:  # one case failing must not lose the others' figures
                print(f"FAILED {case} {mode}: {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()

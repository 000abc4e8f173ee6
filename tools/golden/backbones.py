"""Golden parity fixtures for the vision backbones (ResNet-18, small ViT).

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/backbones.py
Needs torch 2.11, torchvision 0.26 and timm (1.0.31) in that venv.

No weights are shipped. Every floating-point state-dict tensor is filled with
a deterministic formula that the Rust side re-implements (see `fill_value`):

    o      = sum(ord(c) for c in name) % 1000
    base_i = sin(0.61 * i + 0.37 * o)      # i = flat row-major index, float64
    name ends "running_var"   -> 1.0 + 0.5 * |base|
    name ends "running_mean"  -> 0.1 * base
    tensor.dim() >= 2         -> base * sqrt(6 / fan_in), fan_in = numel / shape[0]
    name ends "weight" (1-D)  -> 1.0 + 0.1 * base
    otherwise                 -> 0.1 * base
    computed in float64, then cast to float32.

Integer tensors (BatchNorm `num_batches_tracked`) are left untouched. The
model is loaded with `load_state_dict(strict=True)` and put in eval mode.
Inputs are x[i] = sin(0.013 * i) over the flat index (float64 -> float32).

Writes (all float32) into crates/ssl-vision/tests/fixtures/:
  resnet18.safetensors  input [2,3,64,64], features [2,512] (avgpool output,
                        flattened = fc input), logits [2,1000]
  resnet18_keys.json    [[key, shape, dtype], ...] for every state_dict entry
  vit.safetensors       input [2,3,32,32], tokens [2,65,48] (forward_features),
                        features [2,48] (forward_head(pre_logits=True)),
                        logits [2,10]
  vit_keys.json         same layout as resnet18_keys.json
  vit_drop_path.safetensors  the ViT with 3 blocks and drop_path_rate 0.4 in
                        train mode after torch.manual_seed(5): input
                        [8,3,32,32], tokens [8,65,48], and tokens_eval
                        (the same weights in eval mode)

The forward passes run on CPU in float32 with one thread so re-running gives
byte-identical files. Each model output is also cross-checked against a
hand-written functional re-implementation (the spec the Rust side follows).
"""
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/ssl-vision/tests/fixtures"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def fill_value(name: str, shape) -> np.ndarray:
    """Deterministic float64 values for state-dict entry `name` of `shape`."""
    numel = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    o = sum(ord(c) for c in name) % 1000
    i = np.arange(numel, dtype=np.float64)
    base = np.sin(0.61 * i + 0.37 * o)
    if name.endswith("running_var"):
        v = 1.0 + 0.5 * np.abs(base)
    elif name.endswith("running_mean"):
        v = 0.1 * base
    elif len(shape) >= 2:
        fan_in = numel / shape[0]
        v = base * math.sqrt(6.0 / fan_in)
    elif name.endswith("weight"):
        v = 1.0 + 0.1 * base
    else:
        v = 0.1 * base
    return v.reshape(shape)


def fill_model(model: torch.nn.Module) -> list:
    """Fill every floating state-dict tensor; return the key list [[k, shape, dtype]]."""
    sd = model.state_dict()
    new_sd, keys = {}, []
    for name, t in sd.items():
        keys.append([name, list(t.shape), str(t.dtype).replace("torch.", "")])
        if t.is_floating_point():
            v = torch.from_numpy(fill_value(name, tuple(t.shape))).to(torch.float32)
            new_sd[name] = v.to(t.dtype)
        else:
            new_sd[name] = t.clone()
    model.load_state_dict(new_sd, strict=True)
    model.eval()
    return keys


def make_input(shape) -> torch.Tensor:
    n = int(np.prod(shape))
    x = np.sin(0.013 * np.arange(n, dtype=np.float64))
    return torch.from_numpy(x).to(torch.float32).reshape(shape)


def check(name, t):
    assert torch.isfinite(t).all(), f"{name}: non-finite values"
    s = t.double().std().item()
    print(f"  {name:10s} shape={list(t.shape)} mean={t.double().mean().item():+.6f} std={s:.6f}")
    return s


def assert_close(name, a, b, tol=1e-4):
    err = (a - b).abs().max().item()
    scale = max(1.0, b.abs().max().item())
    assert err <= tol * scale, f"{name}: manual re-implementation differs by {err}"


# ---------------------------------------------------------------- ResNet-18
def resnet_manual(sd, x):
    """Functional torchvision ResNet-18 (eval): the spec for the Rust port."""
    def bn(x, p):
        return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"],
                            sd[p + ".weight"], sd[p + ".bias"], False, 0.0, 1e-5)

    x = F.conv2d(x, sd["conv1.weight"], stride=2, padding=3)
    x = F.relu(bn(x, "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for li, stride in zip(range(1, 5), (1, 2, 2, 2)):
        for b in range(2):
            p = f"layer{li}.{b}"
            s = stride if b == 0 else 1
            idt = x
            y = F.relu(bn(F.conv2d(x, sd[p + ".conv1.weight"], stride=s, padding=1), p + ".bn1"))
            y = bn(F.conv2d(y, sd[p + ".conv2.weight"], stride=1, padding=1), p + ".bn2")
            if p + ".downsample.0.weight" in sd:
                idt = bn(F.conv2d(x, sd[p + ".downsample.0.weight"], stride=s), p + ".downsample.1")
            x = F.relu(y + idt)
    feats = x.mean(dim=(2, 3))
    return feats, F.linear(feats, sd["fc.weight"], sd["fc.bias"])


def build_resnet18():
    model = torchvision.models.resnet18(weights=None, num_classes=1000)
    keys = fill_model(model)
    x = make_input((2, 3, 64, 64))
    captured = {}
    h = model.avgpool.register_forward_hook(lambda m, i, o: captured.__setitem__("f", o))
    with torch.no_grad():
        logits = model(x)
    h.remove()
    feats = torch.flatten(captured["f"], 1)
    with torch.no_grad():
        mf, ml = resnet_manual(model.state_dict(), x)
    assert_close("resnet18.features", mf, feats)
    assert_close("resnet18.logits", ml, logits)
    tensors = {"input": x, "features": feats, "logits": logits}
    return tensors, keys


# ---------------------------------------------------------------- ViT
def vit_manual(sd, x, depth=2, heads=3, patch=4):
    """Functional timm ViT (eval, token pool): the spec for the Rust port."""
    eps = 1e-6
    B = x.shape[0]
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2)                             # [B, 64, D]
    D = x.shape[-1]
    x = torch.cat([sd["cls_token"].expand(B, -1, -1), x], dim=1)  # cls first
    x = x + sd["pos_embed"]                                      # added to all 65 tokens
    hd = D // heads
    for i in range(depth):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (D,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps)
        qkv = F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
        qkv = qkv.reshape(B, -1, 3, heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                         # [B, H, N, hd]
        a = ((q * hd ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        o = (a @ v).transpose(1, 2).reshape(B, -1, D)
        x = x + F.linear(o, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = F.layer_norm(x, (D,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps)
        h = F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]))  # erf GELU
        x = x + F.linear(h, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
    tokens = F.layer_norm(x, (D,), sd["norm.weight"], sd["norm.bias"], eps)
    feats = tokens[:, 0]
    return tokens, feats, F.linear(feats, sd["head.weight"], sd["head.bias"])


def build_vit():
    model = VisionTransformer(
        img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=48, depth=2,
        num_heads=3, mlp_ratio=4.0, qkv_bias=True, class_token=True, global_pool="token")
    keys = fill_model(model)
    x = make_input((2, 3, 32, 32))
    with torch.no_grad():
        tokens = model.forward_features(x)
        feats = model.forward_head(tokens, pre_logits=True)
        logits = model.forward_head(tokens)
        full = model(x)
        mt, mf, ml = vit_manual(model.state_dict(), x)
    assert torch.equal(full, logits)
    assert_close("vit.tokens", mt, tokens)
    assert_close("vit.features", mf, feats)
    assert_close("vit.logits", ml, logits)
    tensors = {"input": x, "tokens": tokens, "features": feats, "logits": logits}
    return tensors, keys


def build_vit_drop_path():
    """The same ViT, 3 blocks, drop_path_rate 0.4 (rates 0, 0.2, 0.4), in
    train mode after torch.manual_seed(5): which samples lose which branch
    comes from torch's generator, which the Rust side seeds the same way."""
    model = VisionTransformer(
        img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=48, depth=3,
        num_heads=3, mlp_ratio=4.0, qkv_bias=True, class_token=True, global_pool="token",
        drop_path_rate=0.4)
    fill_model(model)
    model.train()
    x = make_input((8, 3, 32, 32))
    with torch.no_grad():
        torch.manual_seed(5)
        tokens = model.forward_features(x)
        model.eval()
        plain = model.forward_features(x)
    assert (tokens - plain).abs().max() > 1e-3, "no branch was dropped"
    return {"input": x, "tokens": tokens, "tokens_eval": plain}


def write(stem, tensors, keys):
    print(f"{stem}:")
    for k, v in tensors.items():
        s = check(k, v)
        if k == "logits":
            assert s > 1e-3, f"{stem}: degenerate logits (std {s})"
    tensors = {k: v.contiguous().to(torch.float32) for k, v in tensors.items()}
    save_file(tensors, str(OUT / f"{stem}.safetensors"))
    (OUT / f"{stem}_keys.json").write_text(json.dumps(keys, indent=1) + "\n")
    print(f"  wrote {stem}.safetensors ({len(keys)} state-dict keys)")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    write("resnet18", *build_resnet18())
    write("vit", *build_vit())
    t = build_vit_drop_path()
    save_file({k: v.contiguous() for k, v in t.items()}, str(OUT / "vit_drop_path.safetensors"))
    print("  wrote vit_drop_path.safetensors")


if __name__ == "__main__":
    main()

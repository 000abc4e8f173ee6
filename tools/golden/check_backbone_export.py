"""Checks a `train-vision` or `train-audio` backbone export in the reference library.

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/check_backbone_export.py RUN_DIR
(RUN_DIR is a train-vision or train-audio run folder; needs torch 2.11,
torchvision 0.26, timm 1.0.31.)

It reads RUN_DIR/backbone.json (library and architecture), builds the
reference model: torchvision's `ResNet` (`resnet18/34/50` by layout; a CIFAR
stem is torchvision's model with conv1 a 3x3 stride-1 convolution and no
max-pool, the usual change; `fc` replaced by `nn.Identity()`), or timm's
`VisionTransformer(num_classes=0)` with `global_pool="token"` (or `"avg"`
with `fc_norm=False` for mean pooling; rectangular for spectrograms), or
for the audio CNN the PyTorch module of tools/golden/audio_cnn.py. It loads RUN_DIR/backbone.safetensors
with `load_state_dict(strict=True)` (so no key is missing or unexpected),
runs it in eval mode on RUN_DIR/check_features.safetensors' `input`, and
asserts that max |reference - ssl-rs| is below 1e-4. Then it loads
RUN_DIR/backbone.pt with `torch.jit.load` and checks its output the same way,
on the whole input and on its first image alone.
Exits non-zero on any failure.
"""
import argparse
import json
import pathlib
import sys

import torch
import torchvision
from safetensors.torch import load_file

TOL = 1e-4


def build_torchvision(cfg):
    block = {"basic": torchvision.models.resnet.BasicBlock,
             "bottleneck": torchvision.models.resnet.Bottleneck}[cfg["block"]]
    if cfg["width"] != 64:
        sys.exit(f"torchvision's ResNet has 64 channels in its first stage; this backbone has {cfg['width']} "
                 "(train with --backbone resnet18/34/50 for a torchvision export)")
    m = torchvision.models.resnet.ResNet(block, cfg["layers"])
    if cfg["stem"] == "cifar" or cfg["in_channels"] != 3:
        k, s, p = (3, 1, 1) if cfg["stem"] == "cifar" else (7, 2, 3)
        m.conv1 = torch.nn.Conv2d(cfg["in_channels"], 64, k, s, p, bias=False)
    if cfg["stem"] == "cifar":
        m.maxpool = torch.nn.Identity()
    m.fc = torch.nn.Identity()
    return m


def build_timm(cfg):
    from timm.models.vision_transformer import VisionTransformer
    h = cfg["image_size"]
    w = cfg.get("image_width") or h
    pool = cfg.get("pool", "cls")
    extra = {"global_pool": "token"} if pool == "cls" else {"global_pool": "avg", "fc_norm": False}
    return VisionTransformer(
        img_size=(h, w), patch_size=cfg["patch_size"], in_chans=cfg["in_channels"], num_classes=0,
        embed_dim=cfg["dim"], depth=cfg["depth"], num_heads=cfg["heads"], mlp_ratio=cfg["mlp_ratio"],
        qkv_bias=True, class_token=True, **extra)


def build_byol_a_cnn(cfg):
    from audio_cnn import AudioCnn  # tools/golden/audio_cnn.py: the PyTorch layout
    return AudioCnn(n_mels=cfg["n_mels"], channels=cfg["channels"], d=cfg["dim"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=pathlib.Path)
    a = ap.parse_args()
    meta = json.loads((a.run / "backbone.json").read_text())
    cfg = meta.get("backbone") or meta["encoder"]
    build = {"torchvision": build_torchvision, "timm": build_timm, "byol-a-cnn": build_byol_a_cnn}
    model = build[meta["library"]](cfg)
    sd = load_file(a.run / "backbone.safetensors")
    model.load_state_dict(sd, strict=True)
    model.eval()
    check = load_file(a.run / "check_features.safetensors")
    x, want = check["input"], check["features"]
    with torch.no_grad():
        got = model(x)
    err = (got - want).abs().max().item()
    print(f"{meta['library']}: {len(sd)} tensors loaded strictly; features {list(got.shape)}, max |diff| {err:.3e}")
    ok = err < TOL
    traced = torch.jit.load(str(a.run / "backbone.pt"))
    with torch.no_grad():
        out = traced(x)
    err_pt = (out - want).abs().max().item()
    with torch.no_grad():
        one = traced(x[:1])
    err_one = (one - want[:1]).abs().max().item()
    print(f"torch.jit.load(backbone.pt): features {list(out.shape)}, max |diff| {err_pt:.3e}; "
          f"on one image {err_one:.3e}")
    ok = ok and err_pt < TOL and err_one < TOL
    print("OK" if ok else f"FAILED (tolerance {TOL})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

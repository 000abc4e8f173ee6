"""A timm ViT weights file as timm writes it, for `--init`'s test.

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/backbone_io.py
Needs torch 2.11 and timm 1.0.31 (see README.md).

Writes crates/ssl-vision/tests/fixtures/timm_vit_init.safetensors: the state
dict of backbones.py's ViT (32 px, patch 4, 48 wide, 2 blocks, 3 heads, a
10-class `head`), filled with backbones.py's formula and saved with
`safetensors.torch.save_file(model.state_dict())`, the way timm's hub files
are made. `crates/ssl-vision/tests/weights_io.rs` loads it with
`ssl_vision::weights::init_backbone` and checks the features against
vit.safetensors (backbones.py's timm outputs for the same weights).

No ResNet file is written: a torchvision ResNet-18 file is 45 MB. Its test
writes one from resnet18_keys.json (torchvision's state-dict keys, shapes
and dtypes, `fc.*` and `num_batches_tracked` included) and the same formula.
"""
from pathlib import Path

import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

from backbones import fill_model, make_input

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/ssl-vision/tests/fixtures"

torch.set_num_threads(1)


def main():
    model = VisionTransformer(
        img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=48, depth=2,
        num_heads=3, mlp_ratio=4.0, qkv_bias=True, class_token=True, global_pool="token")
    fill_model(model)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, OUT / "timm_vit_init.safetensors")
    with torch.no_grad():
        feats = model.forward_head(model.forward_features(make_input((2, 3, 32, 32))), pre_logits=True)
    print(f"wrote {OUT / 'timm_vit_init.safetensors'}: {len(sd)} tensors; features[0,:3] = {feats[0, :3].tolist()}")


if __name__ == "__main__":
    main()

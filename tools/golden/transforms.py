"""Golden fixtures for image transforms, from torchvision.transforms.v2.functional on float tensors.

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/transforms.py
Writes crates/ssl-vision/tests/fixtures/transforms.safetensors (all float32, CHW).

Inputs: `img` (3,12,10) and `img_gray1` (1,12,10), uniform in [0,1).
Outputs are named `<op>_<param>` (see the calls below).
"""
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from safetensors.torch import save_file
from torchvision.transforms import InterpolationMode

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/ssl-vision/tests/fixtures/transforms.safetensors"

torch.manual_seed(0)
img = torch.rand(3, 12, 10)
gray = torch.rand(1, 12, 10)

out = {
    "img": img,
    "img_gray1": gray,
    "brightness_0.7": TF.adjust_brightness(img, 0.7),
    "contrast_1.3": TF.adjust_contrast(img, 1.3),
    "contrast_0.6": TF.adjust_contrast(img, 0.6),
    "saturation_0.6": TF.adjust_saturation(img, 0.6),
    "saturation_1.5": TF.adjust_saturation(img, 1.5),
    "hue_0.1": TF.adjust_hue(img, 0.1),
    "hue_-0.3": TF.adjust_hue(img, -0.3),
    "grayscale": TF.rgb_to_grayscale(img, num_output_channels=3),
    "solarize_0.5": TF.solarize(img, 0.5),
    "hflip": TF.horizontal_flip(img),
    "contrast_gray1_1.3": TF.adjust_contrast(gray, 1.3),
    "brightness_gray1_0.7": TF.adjust_brightness(gray, 0.7),
    "blur_k5_s1.0": TF.gaussian_blur(img, kernel_size=[5, 5], sigma=[1.0, 1.0]),
}


def crop(t, l, h, w, size):
    return TF.resized_crop(img, top=t, left=l, height=h, width=w, size=size,
                           interpolation=InterpolationMode.BILINEAR, antialias=False)


out["crop_t2_l1_h6_w5_to_12x10"] = crop(2, 1, 6, 5, [12, 10])
out["crop_t0_l0_h12_w10_to_12x10"] = crop(0, 0, 12, 10, [12, 10])
out["crop_t3_l2_h7_w7_to_9x9"] = crop(3, 2, 7, 7, [9, 9])

OUT.parent.mkdir(parents=True, exist_ok=True)
# .clone(): grayscale is an expanded view and the identity crop aliases `img`;
# safetensors needs dense, non-shared storage.
save_file({k: v.float().contiguous().clone() for k, v in out.items()}, str(OUT))
print(f"wrote {len(out)} tensors to {OUT}")

"""Golden fixtures for JPEG decoding against PIL (what torchvision's
ImageFolder loader decodes with): two small JPEGs written by PIL at quality
90 (a colour one with PIL's default 4:2:0 chroma subsampling, 80x60, and a
gray one, 40x30) and PIL's decoded pixels of each.

Run:  /root/.cache/ssl-rs/golden-venv/bin/python tools/golden/jpeg_decode.py
Writes crates/ssl-vision/tests/fixtures/jpeg/{photo.jpg,gray.jpg} and
crates/ssl-vision/tests/fixtures/jpeg_pil.safetensors (uint8, channel-first:
`photo` [3,60,80], `gray` [1,30,40]), read by crates/ssl-vision/tests/jpeg_parity.rs.
"""
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
DIR = ROOT / "crates/ssl-vision/tests/fixtures/jpeg"
DIR.mkdir(parents=True, exist_ok=True)

rng = np.random.default_rng(0)


def photo_like(h, w, channels):
    """A gradient, a few filled shapes with hard edges and mild noise."""
    y, x = np.mgrid[0:h, 0:w]
    t = (x / w + y / h) / 2
    a, b = rng.integers(0, 256, channels), rng.integers(0, 256, channels)
    img = a * (1 - t[..., None]) + b * t[..., None]
    for _ in range(6):
        cy, cx, ry, rx = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, h / 2), rng.uniform(4, w / 2)
        inside = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1
        img[inside] = rng.integers(0, 256, channels)
    img = img + rng.uniform(-6, 6, (h, w, 1))
    return np.clip(img, 0, 255).astype(np.uint8)


out = {}
for name, (h, w, mode) in {"photo": (60, 80, "RGB"), "gray": (30, 40, "L")}.items():
    arr = photo_like(h, w, 3 if mode == "RGB" else 1)
    Image.fromarray(arr if mode == "RGB" else arr[..., 0], mode).save(DIR / f"{name}.jpg", quality=90)
    decoded = np.asarray(Image.open(DIR / f"{name}.jpg").convert(mode))
    if decoded.ndim == 2:
        decoded = decoded[..., None]
    out[name] = torch.from_numpy(np.ascontiguousarray(decoded.transpose(2, 0, 1)))
save_file(out, ROOT / "crates/ssl-vision/tests/fixtures/jpeg_pil.safetensors")
print("PIL", PIL.__version__, {k: tuple(v.shape) for k, v in out.items()})

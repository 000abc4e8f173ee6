"""Write the tensors of a safetensors file whose names start with PREFIX
to a new file, with the prefix removed (standard library only).

    python3 tools/weights/take_prefix.py model.safetensors out.safetensors target.encoder.

For example BYOL-A's target (EMA) encoder out of a run's model.safetensors,
to evaluate it with `train-audio --init out.safetensors --epochs 0`
(docs/results.md, "BYOL-A's kNN, two more tries").
"""
import json
import struct
import sys


def main(src, dst, prefix):
    with open(src, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    data = blob[8 + n :]
    out, chunks, offset = {}, [], 0
    for name, entry in header.items():
        if name == "__metadata__" or not name.startswith(prefix):
            continue
        start, end = entry["data_offsets"]
        chunk = data[start:end]
        out[name[len(prefix) :]] = {
            "dtype": entry["dtype"],
            "shape": entry["shape"],
            "data_offsets": [offset, offset + len(chunk)],
        }
        chunks.append(chunk)
        offset += len(chunk)
    if not out:
        sys.exit(f"{src}: no tensor name starts with {prefix!r}")
    head = json.dumps(out).encode()
    head += b" " * (-len(head) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(chunks))
    print(f"{dst}: {len(out)} tensors")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])

#!/usr/bin/env bash
# Multi-GPU scaling with NCCL, one rank per GPU (not yet run: the lent
# machines have had one GPU). SimCLR ResNet-18 at 32 px on 50k generated
# images (the same workload as bench_gpu.sh), with the global batch
# growing with the ranks (512 per GPU), for 1, 2, 4 … GPUs up to the
# machine's count; prints images/s per run from report.json.
# Needs train-vision built with NCCL in this folder (see dist.sh).
set -u
B=$(cd "$(dirname "$0")" && pwd)
. "$B/env.sh"
TORCHRUN=$(command -v torchrun || echo "python3 -m torch.distributed.run")
GPUS=$(nvidia-smi -L | wc -l)
DATA=${DATA:-/tmp/cifar-synth}
# Random CIFAR-10-format bytes, as bench_gpu.sh (throughput does not
# depend on the pixels).
python3 - "$DATA" <<'PY'
import os, sys, numpy as np
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
rng = np.random.default_rng(0)
for name, n in [(f"data_batch_{i}.bin", 10000) for i in range(1, 6)] + [("test_batch.bin", 10000)]:
    rows = rng.integers(0, 256, size=(n, 3073), dtype=np.uint8); rows[:, 0] %= 10
    rows.tofile(os.path.join(d, name))
PY
n=1
while [ "$n" -le "$GPUS" ]; do
  out=/tmp/scale-$n
  $TORCHRUN --no-python --standalone --nproc-per-node "$n" "$B/train-vision" \
    --data "cifar10:$DATA" --backbone resnet18 --batch-size $((512 * n)) --epochs 3 --knn-every 0 \
    --dist-backend nccl --out "$out" > "$out.log" 2>&1
  python3 -c "import json;r=json.load(open('$out/report.json'));print($n,'GPUs',round(r['train']['samples_per_s']),'images/s')" \
    2>/dev/null || { echo "$n GPUs: failed"; tail -5 "$out.log"; }
  n=$((n * 2))
done

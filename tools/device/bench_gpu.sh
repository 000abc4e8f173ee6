#!/usr/bin/env bash
# Issue 6, point 4: SimCLR ResNet-18 (CIFAR stem) training throughput on the
# GPU, ssl-rs (device-resident augmentation, then the CPU rayon path) against
# PyTorch eager (benches/reference/gpu_simclr.py: torchvision v2 in a
# DataLoader with one worker per core), in one run on one machine. Same
# recipe on both sides: bf16 autocast, SGD 0.1 momentum 0.9, weight decay
# 1e-6, NT-Xent at temperature 0.5, batch $BS images (2*$BS views), no
# synchronisation per step. Each side
# reports images/s and the fraction of wall time spent waiting for data. The
# data are random CIFAR-10-format bytes (throughput does not depend on
# content). Carry gpu-bundle/ with train-vision, this script and
# gpu_simclr.py; the reference needs lightly (carry its wheel, see
# tools/device/README.md).
set -eu
B=$(cd "$(dirname "$0")" && pwd)
. "$B/env.sh"
PY=${PY:-python3}
D=/tmp/cifar-synth
BS=${BS:-512}
EPOCHS=${EPOCHS:-3}
$PY - <<'PY'
import os, numpy as np
d = "/tmp/cifar-synth"; os.makedirs(d, exist_ok=True)
rng = np.random.default_rng(0)
for name, n in [(f"data_batch_{i}.bin", 10000) for i in range(1, 6)] + [("test_batch.bin", 10000)]:
    rows = rng.integers(0, 256, size=(n, 3073), dtype=np.uint8); rows[:, 0] %= 10
    rows.tofile(os.path.join(d, name))
PY
for aug in ${AUGS:-device cpu}; do
  start=$(date +%s.%N)
  $B/train-vision --data cifar10:$D --backbone resnet18 --batch-size $BS --epochs $EPOCHS --device cuda \
    --optimizer sgd --lr 0.1 --weight-decay 1e-6 --temperature 0.5 --warmup-epochs 0 \
    --augment-on $aug --knn-every 0 --checkpoint-every 0 --out /tmp/gpu-bench-$aug > /tmp/gpu-bench-$aug.log 2>&1 \
    || { tail -5 /tmp/gpu-bench-$aug.log; exit 1; }
  end=$(date +%s.%N)
  # Whole run (first steps, cuDNN autotuning and the checkpoint included),
  # and steady state: the median of the 10-step windows after epoch 1.
  $PY - "$aug" "$start" "$end" <<'PY'
import json, statistics, sys
aug, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
t = json.load(open(f"/tmp/gpu-bench-{aug}/report.json"))["train"]
w = [r["samples_per_s"] for r in map(json.loads, open(f"/tmp/gpu-bench-{aug}/metrics.jsonl"))
     if "samples_per_s" in r and r.get("epoch", 0) >= 1]
print(f"RESULT ssl-rs augment-on {aug}: images/s whole run {t['samples_per_s']:.0f}, "
      f"steady {statistics.median(w):.0f}; data_wait_fraction {t['data_wait_fraction']:.3f}; "
      f"train {t['train_wall_s']:.1f} s, process {end - start:.1f} s")
PY
done
[ "${REF:-1}" = 1 ] || exit 0
# PyTorch eager as written in most scripts (NCHW), then channels-last as
# ssl-rs uses on CUDA.
for layout in "" --channels-last; do
  $PY $B/gpu_simclr.py --data $D --batch-size $BS --steps ${REF_STEPS:-150} --warmup 20 $layout
done

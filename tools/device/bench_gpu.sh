#!/usr/bin/env bash
# Issue 6, point 4: SimCLR ResNet-18 (CIFAR stem) training throughput on the
# GPU, ssl-rs with device-resident augmentation and bf16 autocast against
# PyTorch eager (benches/reference/gpu_simclr.py: torchvision v2 in a
# DataLoader with workers, bf16 autocast), in one run on one machine, each
# with the fraction of step time spent waiting for data. The data are
# random CIFAR-10-format bytes (throughput does not depend on content).
# Carry gpu-bundle/ with train-vision, this script and gpu_simclr.py.
set -eu
TL=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/torch/lib 2>/dev/null | head -1)
export LD_LIBRARY_PATH=$TL
PY=/opt/torch/.venv/bin/python
B=$(dirname "$0")
D=/tmp/cifar-synth
BS=${BS:-512}
$PY - <<'PY'
import os, numpy as np
d = "/tmp/cifar-synth"; os.makedirs(d, exist_ok=True)
rng = np.random.default_rng(0)
for name, n in [(f"data_batch_{i}.bin", 10000) for i in range(1, 6)] + [("test_batch.bin", 10000)]:
    rows = rng.integers(0, 256, size=(n, 3073), dtype=np.uint8); rows[:, 0] %= 10
    rows.tofile(os.path.join(d, name))
PY
for aug in device cpu; do
  $B/train-vision --data cifar10:$D --backbone resnet18 --batch-size $BS --epochs 2 --device cuda \
    --augment-on $aug --knn-every 0 --out /tmp/gpu-bench-$aug > /tmp/gpu-bench-$aug.log 2>&1 || { tail -5 /tmp/gpu-bench-$aug.log; exit 1; }
  $PY -c "import json;t=json.load(open('/tmp/gpu-bench-$aug/report.json'))['train'];print('ssl-rs augment-on $aug: images/s', round(t['samples_per_s']), 'data_wait_fraction', round(t['data_wait_fraction'], 3))"
done
$PY $B/gpu_simclr.py --data $D --batch-size $BS || echo "reference failed (needs torchvision and lightly in $PY)"

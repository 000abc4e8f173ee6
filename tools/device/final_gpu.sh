#!/usr/bin/env bash
# A session's closing GPU check after a change to the training path
# (2026-12-04: the fused optimizers), about 4 min on an H200:
#   1. ssl-doctor, every crate's CUDA tests and ssl-dist's (as all.sh, dist.sh);
#   2. compute-only steps, ssl-rs and PyTorch eager in one run (perf_gpu.sh's
#      first half, without torch.compile);
#   3. end-to-end SimCLR at 32 px with CPU and device augmentation, and a
#      short MAE run through the trainer (AdamW fused on CUDA).
# Carry gpu-bundle/ as all.sh and perf_gpu.sh need it, plus dist-cuda-tests.
set -u
B=$(cd "$(dirname "$0")" && pwd)
. "$B/env.sh"
ROOT=$(pwd)
[ -e /work/main ] || { mkdir -p /work && ln -s "$ROOT" /work/main; }
{
nvidia-smi -L
echo "== doctor"; timeout 60 "$B/ssl-doctor" 2>&1 | tail -3
for t in cuda-tests augment-tests logmel-tests bert-tests dist-cuda-tests; do
  echo "== $t"
  (cd /work/main && timeout 90 "$B/$t" --test-threads=1 --nocapture 2>&1 | grep -E "^test |test result|panicked|differ|: [0-9.]+e-")
done
echo "== compute-only steps"
for c in simclr mae bert; do timeout 60 "$B/gpu-step" $c 2>/dev/null; done
timeout 100 python3 "$B/gpu_step.py" simclr mae bert --modes eager
echo "== end to end"
for aug in cpu device; do BS=1024 AUGS=$aug REF=0 timeout 70 bash "$B/bench_gpu.sh" | sed "s/^RESULT/RESULT batch 1024/"; done
BS=512 AUGS=cpu REF=0 timeout 70 bash "$B/bench_gpu.sh" | sed "s/^RESULT/RESULT batch 512/"
echo "== MAE through the trainer"
time timeout 90 "$B/train-vision" --method mae --epochs 3 --device cuda --out /tmp/mae > /tmp/mae.log 2>&1; tail -4 /tmp/mae.log
} 2>&1 | tee "$OUT/final.log"
true

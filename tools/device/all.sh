#!/usr/bin/env bash
# One device session's checks, in order of importance, each under its own
# time limit so a slow step cannot starve the rest:
#   1. ssl-doctor and every crate's `cuda-tests` (ssl-core's CUDA checks,
#      vision's device augmentation, audio's log-mel and text's BERT logits
#      on CUDA against the PyTorch fixtures);
#   2. bench_gpu.sh (issue 6's GPU throughput comparison);
#   3. train-text and train-audio end to end on cuda:0.
# Run from the repository root with gpu-bundle/ carried (see README.md).
# Test binaries find their fixtures through the build machine's absolute
# paths, so /work/main is linked to this checkout first.
set -u
B=$(cd "$(dirname "$0")" && pwd)
. "$B/env.sh"
ROOT=$(pwd)
[ -e /work/main ] || { mkdir -p /work && ln -s "$ROOT" /work/main; }
nvidia-smi -L; nproc
echo "== doctor"; timeout 60 "$B/ssl-doctor"
for t in cuda-tests augment-tests logmel-tests bert-tests; do
  echo "== $t"
  (cd /work/main && timeout 120 "$B/$t" --test-threads=4 2>&1 | grep -E "^test |test result|panicked|differ")
done
echo "== bench_gpu"
timeout 300 bash "$B/bench_gpu.sh" 2>&1 | grep -v "^\s*$"
echo "== train-text on cuda (defaults)"
time timeout 180 "$B/train-text" --device cuda --out /tmp/text-cuda \
  > /tmp/text-cuda.log 2>&1; tail -4 /tmp/text-cuda.log
cp /tmp/text-cuda/report.json "$OUT/text-cuda-report.json" 2>/dev/null
echo "== train-audio on cuda (defaults)"
time timeout 180 "$B/train-audio" --device cuda --out /tmp/audio-cuda \
  > /tmp/audio-cuda.log 2>&1; tail -4 /tmp/audio-cuda.log
cp /tmp/audio-cuda/report.json "$OUT/audio-cuda-report.json" 2>/dev/null
true

#!/usr/bin/env bash
# Device check: doctor, CUDA tests, and train-vision on cuda:0.
set -u
B=$(cd "$(dirname "$0")" && pwd)
. "$B/env.sh"
echo "torch lib: $TL"; nvidia-smi -L; nproc
echo "== doctor"; $B/ssl-doctor
echo "== cuda tests"; $B/cuda-tests --test-threads=1 2>&1 | tail -8
echo "== train-vision cuda (bf16)"
/usr/bin/time -v $B/train-vision --device cuda --out /tmp/run-cuda 2>/tmp/tv.err; tail -25 /tmp/tv.err | grep -E "epoch|Elapsed|Maximum resident" 
cp /tmp/run-cuda/report.json $OUT/report-cuda.json; cp /tmp/run-cuda/metrics.jsonl $OUT/metrics-cuda.jsonl
echo "== train-vision cuda, resume check (2 more epochs from the 15-epoch checkpoint is a no-op run)"
$B/train-vision --device cuda --out /tmp/run-cuda --resume 2>&1 | grep -E "resuming|SSL|random" 

#!/usr/bin/env bash
# The optimizer's multi-tensor kernels and the trainer's per-step check on
# a GPU (issue 17, point 5, second run of 2026-12-04): ssl-core's CUDA
# tests (the fused optimizers against the per-parameter path), then
# `gpu-step` for each case with the fused optimizer, with the per-parameter
# one (FUSED=0), and SimCLR with the trainer's per-step synchronisation
# (SYNC_EACH_STEP=1); then end-to-end SimCLR at 32 px as perf_gpu.sh.
# Carry gpu-bundle/ with gpu-step, train-vision, core-cuda-tests and the
# scripts. Log: $OUT/optim.log.
set -u
B=$(cd "$(dirname "$0")" && pwd)
. "$B/env.sh"
{
echo "== ssl-core CUDA tests"
timeout 60 "$B/core-cuda-tests" --test-threads=1 2>&1 | grep -E "^test |test result|panicked|differ"
for c in simclr mae bert bert-dense; do
  timeout 60 "$B/gpu-step" $c
  FUSED=0 timeout 60 "$B/gpu-step" $c
done
SYNC_EACH_STEP=1 timeout 60 "$B/gpu-step" simclr
SYNC_EACH_STEP=1 timeout 60 "$B/gpu-step" simclr 1024
timeout 60 "$B/gpu-step" simclr 1024
for bs in 512 1024; do BS=$bs AUGS=device REF=0 timeout 100 bash "$B/bench_gpu.sh" | sed "s/^RESULT/RESULT batch $bs/"; done
} 2>&1 | tee "$OUT/optim.log"
true

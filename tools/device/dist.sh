#!/usr/bin/env bash
# Distributed training on a lent GPU machine (issue 13, point 6), in order:
#   1. ssl-dist's CUDA tests: a NCCL process group of one (constructed; a
#      world of one runs no collective), two ranks sharing the GPU through Gloo (their
#      gradient against one process), two NCCL ranks when there are 2 GPUs;
#   2. train-vision on cuda:0 in one process, then as 2 ranks sharing the
#      GPU through Gloo (torchrun --no-python), images/s of each;
#   3. with 2 or more GPUs: dist_scaling.sh (NCCL, one rank per GPU).
# Build here with NCCL (SSL_RS_NCCL=1 cargo xtask setup installs the CUDA
# header wheels) and carry gpu-bundle/ (see README.md):
#   SSL_RS_NCCL=1 cargo xtask setup
#   cargo build --release -p ssl-vision --bin train-vision --features ssl-vision/nccl
#   cargo test --release -p ssl-dist --features nccl,cuda-tests --test cuda --no-run
#   cp target/release/train-vision gpu-bundle/; cp target/release/deps/cuda-<hash> gpu-bundle/dist-cuda-tests
set -u
B=$(cd "$(dirname "$0")" && pwd)
. "$B/env.sh"
TORCHRUN=$(command -v torchrun || echo "python3 -m torch.distributed.run")
GPUS=$(nvidia-smi -L | wc -l)
nvidia-smi -L; nproc
echo "== ssl-dist CUDA tests"
timeout 90 "$B/dist-cuda-tests" --test-threads=1 --nocapture 2>&1 | grep -E "^test |test result|panicked|skipped|e-"
echo "== train-vision, one process on cuda:0"
time timeout 120 "$B/train-vision" --device cuda:0 --out /tmp/one > /tmp/one.log 2>&1; tail -4 /tmp/one.log
cp /tmp/one/report.json "$OUT/one-process-report.json" 2>/dev/null
echo "== train-vision, 2 ranks sharing cuda:0 through Gloo (torchrun)"
time timeout 150 $TORCHRUN --no-python --standalone --nproc-per-node 2 "$B/train-vision" \
  --device cuda:0 --dist-backend gloo --out /tmp/two > /tmp/two.log 2>&1; tail -4 /tmp/two.log
cp /tmp/two/report.json "$OUT/two-ranks-gloo-report.json" 2>/dev/null
if [ "$GPUS" -ge 2 ]; then
  echo "== NCCL scaling over $GPUS GPUs"
  timeout 600 bash "$B/dist_scaling.sh" 2>&1 | tee "$OUT/scaling.log"
fi
true

#!/usr/bin/env bash
# Issue 17, point 5: where ssl-rs stands against the GPU's limit and the
# strongest PyTorch peer, in one run (about 6 min on an H200):
#   1. compute-only steps, the batch already on the device, bf16:
#      ssl-rs (`gpu-step`) against PyTorch eager and torch.compile
#      (benches/reference/gpu_step.py) for SimCLR ResNet-18 at 32 px and MAE
#      ViT-S/16 at 224 px; BERT-base MLM tokens/s against transformers with
#      SDPA, and ssl-rs's sparse MLM head against its dense one; the step's
#      FLOPs (PyTorch's flop counter) for the fraction of the bf16 peak;
#   2. end-to-end SimCLR at 32 px (bench_gpu.sh's ssl-rs side, device
#      augmentation) at batch 512 and 1024: steady images/s.
# Build here and carry gpu-bundle/ with gpu-step, train-vision, this script,
# bench_gpu.sh, env.sh and gpu_step.py (see README.md). Every line to keep
# starts with RESULT; the whole log goes to $OUT/perf.log.
set -u
B=$(cd "$(dirname "$0")" && pwd)
. "$B/env.sh"
{
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
echo "== ssl-rs compute-only steps"
for c in simclr mae bert bert-dense; do timeout 60 "$B/gpu-step" $c || echo "FAILED gpu-step $c"; done
echo "== PyTorch eager"
timeout 120 python3 "$B/gpu_step.py" simclr mae bert --modes eager --flops
echo "== end-to-end SimCLR at 32 px"
for bs in 512 1024; do BS=$bs AUGS=device REF=0 timeout 100 bash "$B/bench_gpu.sh" | sed "s/^RESULT/RESULT batch $bs/"; done
echo "== torch.compile"
timeout 240 python3 "$B/gpu_step.py" simclr mae --modes compile
echo "== cuDNN autotuner on both sides"
CUDNN_BENCHMARK=1 timeout 60 "$B/gpu-step" simclr | sed 's/"ssl-rs"/"ssl-rs cudnn-benchmark"/'
timeout 60 python3 "$B/gpu_step.py" simclr --modes eager --cudnn-benchmark | sed 's/pytorch-eager/pytorch-eager cudnn-benchmark/'
} 2>&1 | tee "$OUT/perf.log"
true

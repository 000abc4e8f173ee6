#!/usr/bin/env bash
# One device call for issues 13 and 17 (2026-12-04): dist.sh, then
# perf_gpu.sh with the time left of DEADLINE seconds (default 570), so the
# pair ends inside one 10-minute call. Logs: $OUT/dist.log, $OUT/perf.log.
B=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; export OUT
timeout 300 bash "$B/dist.sh" 2>&1 | tee "$OUT/dist.log"
left=$(( ${DEADLINE:-570} - SECONDS ))
echo "== perf_gpu.sh with ${left} s left"
timeout "$left" bash "$B/perf_gpu.sh" > /dev/null 2>&1
grep -E "RESULT|FAILED|rror" "$OUT/perf.log"

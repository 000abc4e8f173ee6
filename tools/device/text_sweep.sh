#!/usr/bin/env bash
# Issue 4 on the GPU: train-text variants one after the other, each
# printing its held-out masked-token accuracy and its downstream table
# (pretrained against from scratch). Carry gpu-bundle/ with train-text.
# Not concurrently: six runs at once on 16 cores (each with 16 torch and 16
# rayon threads) all ran past 270 s, where one alone takes 75 s.
# Usage: text_sweep.sh NAME "ARGS" [NAME "ARGS" ...]
set -u
B=$(cd "$(dirname "$0")" && pwd)
. "$B/env.sh"
while [ $# -ge 2 ]; do
  name=$1; args=$2; shift 2
  echo "== $name: $args"
  # shellcheck disable=SC2086
  timeout "${TEXT_LIMIT:-150}" "$B/train-text" --device cuda --out "/tmp/text-$name" $args 2>&1 \
    | grep -E "held-out|pretrained |from scratch|rror"
  cp "/tmp/text-$name/report.json" "$OUT/text-$name.json" 2>/dev/null
done
true

#!/usr/bin/env bash
# Every method on the bundled set on cuda:0: the default recipe, and the
# learning rate halved and doubled.
set -u
B=$(cd "$(dirname "$0")" && pwd)
. "$B/env.sh"
run() { # method lr-or-default epochs
  local extra="--epochs $3"; [ "$2" != default ] && extra="$extra --lr $2"
  local out=/tmp/sweep-$1-$2
  local t0=$(date +%s.%N)
  $B/train-vision --device cuda --method $1 $extra --out $out >/tmp/log 2>&1 || { echo "$1 $2 FAILED"; tail -5 /tmp/log; return; }
  local t1=$(date +%s.%N)
  python3 - "$out/report.json" "$1" "$2" "$t0" "$t1" <<'PY'
import json,sys
r=json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:13s} lr={sys.argv[3]:8s} ep={r['epochs']} ssl knn {r['ssl']['knn_top1']:.3f} lin {r['ssl']['linear_top1']:.3f} | rnd knn {r['random_init']['knn_top1']:.3f} lin {r['random_init']['linear_top1']:.3f} | loss {r['train']['final_loss']:.4f} | {r['train']['samples_per_s']:.0f} samples/s | wall {float(sys.argv[5])-float(sys.argv[4]):.1f}s")
PY
}
run moco-v3 default 15; run moco-v3 0.003 15
run mae default 15; run mae 0.003 15
run byol default 50; run byol 0.8 50
run simsiam default 50; run simsiam 0.1 50
run moco-v2 default 30

#!/usr/bin/env bash
# Last device check: augmentation equivalence on CUDA (grid built on the
# device), then SimCLR throughput with and without channels-last, and with
# device augmentation.
set -u
B=$(cd "$(dirname "$0")" && pwd)
. "$B/env.sh"
$B/augment-tests --test-threads=1 2>&1 | grep -E "^test |result"
for cfg in "off cpu" "on cpu" "on device" "off cpu" "on cpu"; do
  set -- $cfg
  $B/train-vision --device cuda --channels-last $1 --augment-on $2 --knn-every 0 --out /tmp/r-$1-$2 >/tmp/log 2>&1 || { tail -5 /tmp/log; continue; }
  python3 -c "import json;r=json.load(open('/tmp/r-$1-$2/report.json'));print('channels-last $1 augment $2:', round(r['train']['samples_per_s']), 'images/s; knn', r['ssl']['knn_top1'], 'linear', r['ssl']['linear_top1'])"
done

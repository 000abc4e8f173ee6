#!/usr/bin/env bash
# The three steps that docs/results.md ("A tuning set shaped like the
# digits") asks of a change to an audio recipe before the flite digits
# may judge it, so that the digits stay out of tuning:
#
#   tune      the mixed tuning set (runs/data/words-mixed-few), seeds 0 and 1
#   validate  the bundled keywords' four validation runs: --val-fraction 0.2
#             and --val-speakers _f3_,_klatt2_, seeds 0 and 1
#   heldout   the flite digits (runs/data/digits-flite), 3 seeds, with
#             fine-tuning: only for a change that passed the first two
#
# and `sums`, which prints the kNN and linear-probe sums (SSL, random init,
# gain) of a step's finished runs. The rule each step is judged by is
# written in docs/results.md before the runs finish; this script only runs
# them the same way every time. No fine-tuning in the first two steps.
#
# usage: tools/recipes/audio_carry_over.sh STEP NAME METHOD [train-audio flags]
#        tools/recipes/audio_carry_over.sh sums STEP NAME
# e.g.   tools/recipes/audio_carry_over.sh tune cola-eq cola --view-eq 3,6
#
# Runs go to runs/carry-over/STEP/NAME-*/ (logs beside them); a run whose
# report.json exists is not run again. The tuning set needs espeak-ng and
# Festival, the digits flite (datasets/README.md); each is made when
# missing. Run from the repository root, one step at a time (each run uses
# every core): about 3 minutes a run on 2 cores with the CNN.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=runs/carry-over

sums() { # STEP NAME
  python3 - "$root/$1" "$2" <<'PY'
import glob, json, os, sys
base, name = sys.argv[1], sys.argv[2]
reports = sorted(glob.glob(f"{base}/{name}-*/report.json") + glob.glob(f"{base}/{name}-*/seed-*/report.json"))
if not reports:
    sys.exit(f"no finished runs under {base}/{name}-*")
tot = {k: 0.0 for k in ("sk", "sl", "rk", "rl")}
for path in list(reports):
    r = json.load(open(path))
    if not isinstance(r.get("ssl", {}).get("knn_top1"), float):
        reports.remove(path)  # --seeds' summary: its seeds are read instead
        continue
    s, b = r["ssl"], r["random_init"]
    row = (100 * s["knn_top1"], 100 * s["linear_top1"], 100 * b["knn_top1"], 100 * b["linear_top1"])
    for k, v in zip(tot, row):
        tot[k] += v
    print(f"{os.path.dirname(path):48s} kNN {row[0]:5.1f} / {row[2]:5.1f}  linear {row[1]:5.1f} / {row[3]:5.1f}")
print(f"sum over {len(reports)} runs: SSL {tot['sk']:.1f} / {tot['sl']:.1f}, random init {tot['rk']:.1f} / {tot['rl']:.1f}, "
      f"gain {tot['sk'] - tot['rk']:+.1f} / {tot['sl'] - tot['rl']:+.1f}, SSL total {tot['sk'] + tot['sl']:.1f}")
PY
}

run() { # DIR LOG [train-audio flags]
  local out=$1 log=$2
  shift 2
  if [ -f "$out/report.json" ]; then
    echo "$out: finished earlier, kept"
    return
  fi
  local t0
  t0=$(date +%s)
  if ! cargo xtask train-audio --out "$out" "$@" >"$log" 2>&1; then
    echo "$out: failed, see $log" >&2
    tail -5 "$log" >&2
    exit 1
  fi
  echo "$out: $(($(date +%s) - t0)) s"
}

if [ "${1:-}" = sums ]; then
  [ $# -eq 3 ] || { echo "usage: $0 sums STEP NAME" >&2; exit 2; }
  sums "$2" "$3"
  exit
fi
[ $# -ge 3 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d;s/^# \{0,1\}//' >&2; exit 2; }
step=$1 name=$2 method=$3
shift 3
mkdir -p "$root/$step"
case $step in
  tune)
    if [ ! -d runs/data/words-mixed-few/test ]; then
      cargo xtask gen-keywords --out runs/data/words-mixed-few \
        --words bed,bird,cat,dog,happy,house,marvin,sheila,tree,wow \
        --train-voices festival:kal_diphone,en-gb-scotland+m1,en-us+m2 \
        --test-voices festival:ked_diphone,en-us+f4 --noise-snr 0,20
    fi
    for s in 0 1; do
      run "$root/tune/$name-s$s" "$root/tune/$name-s$s.log" --method "$method" \
        --data folder:runs/data/words-mixed-few --finetune-epochs 0 --seed $s "$@"
    done
    ;;
  validate)
    for s in 0 1; do
      run "$root/validate/$name-frac-s$s" "$root/validate/$name-frac-s$s.log" --method "$method" \
        --val-fraction 0.2 --finetune-epochs 0 --seed $s "$@"
      run "$root/validate/$name-spk-s$s" "$root/validate/$name-spk-s$s.log" --method "$method" \
        --val-speakers _f3_,_klatt2_ --finetune-epochs 0 --seed $s "$@"
    done
    ;;
  heldout)
    [ -d runs/data/digits-flite/test ] || cargo xtask gen-keywords --engine flite
    run "$root/heldout/$name-seeds" "$root/heldout/$name-seeds.log" --method "$method" \
      --data folder:runs/data/digits-flite --seeds 3 "$@"
    ;;
  *)
    echo "unknown step \`$step\` (expected tune, validate, heldout or sums)" >&2
    exit 2
    ;;
esac
sums "$step" "$name"

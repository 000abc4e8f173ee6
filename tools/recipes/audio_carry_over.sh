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
self=$(realpath "$0")
cd "$(dirname "$self")/../.."
root=runs/carry-over

sums() { # STEP NAME
  python3 - "$root" "$1" "$2" <<'PY'
import glob, json, sys
root, step, name = sys.argv[1:]
# Each step's own folders only: NAME-s0 is not NAME-eq-s0.
patterns = {
    "tune": [f"{name}-s[0-9]*"],
    "validate": [f"{name}-frac-s[0-9]*", f"{name}-spk-s[0-9]*"],
    "heldout": [f"{name}-seeds/seed-[0-9]*"],
}
if step not in patterns:
    sys.exit(f"unknown step `{step}` (expected tune, validate or heldout)")
reports = sorted(p for pat in patterns[step] for p in glob.glob(f"{root}/{step}/{pat}/report.json"))
if not reports:
    sys.exit(f"no finished runs of {name} under {root}/{step}")
tot = [0.0] * 4
for path in reports:
    r = json.load(open(path))
    try:
        s, b = r["ssl"], r["random_init"]
        row = [100 * float(x) for x in (s["knn_top1"], s["linear_top1"], b["knn_top1"], b["linear_top1"])]
    except (KeyError, TypeError, ValueError) as e:
        sys.exit(f"{path}: no kNN and linear figures of SSL and random init ({e!r})")
    tot = [t + v for t, v in zip(tot, row)]
    print(f"{path[:-len('/report.json')]:48s} kNN {row[0]:5.1f} / {row[2]:5.1f}  linear {row[1]:5.1f} / {row[3]:5.1f}")
print(f"sum over {len(reports)} runs: SSL {tot[0]:.1f} / {tot[1]:.1f}, random init {tot[2]:.1f} / {tot[3]:.1f}, "
      f"gain {tot[0] - tot[2]:+.1f} / {tot[1] - tot[3]:+.1f}, SSL total {tot[0] + tot[1]:.1f}")
PY
}

run() { # DIR LOG [train-audio flags]
  local out=$1 log=$2
  shift 2
  # The flags a kept run was made with, to refuse reusing it for others.
  local flags="$*"
  if [ -f "$out/report.json" ]; then
    if [ "$(cat "$out.flags" 2>/dev/null)" != "$flags" ]; then
      echo "$out was run with other flags ($(cat "$out.flags" 2>/dev/null || echo unknown)); use another NAME" >&2
      exit 1
    fi
    echo "$out: finished earlier, kept"
    return
  fi
  local t0
  t0=$(date +%s)
  echo "$flags" >"$out.flags"
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
[ $# -ge 3 ] || { sed -n '2,/^set -euo/p' "$self" | sed '$d;s/^# \{0,1\}//' >&2; exit 2; }
step=$1 name=$2 method=$3
shift 3
case $step in
  tune | validate | heldout) mkdir -p "$root/$step" ;;
esac
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

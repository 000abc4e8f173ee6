#!/usr/bin/env bash
# The anchors' published recipes (`train-vision --recipe`, docs/recipes.md)
# on cuda:0, given the data. None of these data sets is on a registry, so
# the machine must have them (the project's set-up cannot fetch them):
#   CIFAR10=DIR   CIFAR-10 binary batches (cifar-10-batches-bin)
#   CIFAR100=DIR  CIFAR-100 binary (cifar-100-binary)
#   IN100=DIR     ImageNet-100 as DIR/train/<class>/*.JPEG and DIR/test/<class>/*
#   STL10=DIR     stl10_binary (train/test/unlabeled)
# RECIPES="solo-learn/cifar/simclr lightly/cifar10/dino" picks recipes (default:
# every one whose data is set); EPOCHS=N shortens each run (a smoke check:
# the published figures need the full epochs, hours per run); SEEDS=N repeats.
# Each run's report lands in $OUT/<recipe>/; `cargo xtask results add` keeps it.
set -u
B=$(cd "$(dirname "$0")" && pwd)
. "$B/env.sh"
extra=()
[ -n "${EPOCHS:-}" ] && extra+=(--epochs "$EPOCHS")
[ -n "${SEEDS:-}" ] && extra+=(--seeds "$SEEDS")
data_for() { # recipe name -> --data argument, or nothing when the data is not set
  case "$1" in
    */cifar/*|lightly/cifar10/*) [ -n "${CIFAR10:-}" ] && echo "cifar10:$CIFAR10" ;;
    */imagenet-100/*) [ -n "${IN100:-}" ] && echo "folder:$IN100" ;;
  esac
}
names=${RECIPES:-$("$B/train-vision" --recipe list | awk '{print $1}')}
for r in $names; do
  d=$(data_for "$r")
  if [ -z "$d" ]; then echo "skip $r: its data is not set"; continue; fi
  # ImageNet-100 streams from its folder; images smaller than the 224-px
  # views are upscaled, as torchvision's RandomResizedCrop does.
  stream=(); case "$d" in folder:*) stream=(--stream --allow-upscale) ;; esac
  out="$OUT/${r//\//_}"
  echo "== $r on $d"
  time "$B/train-vision" --device cuda --recipe "$r" --data "$d" "${stream[@]}" "${extra[@]}" --out "$out" \
    > "$out.log" 2>&1 || { echo "$r FAILED"; tail -5 "$out.log"; continue; }
  tail -6 "$out.log"
done
# CIFAR-100 uses the CIFAR recipes on the other data set:
if [ -n "${CIFAR100:-}" ]; then
  for r in $names; do
    case "$r" in solo-learn/cifar/*) ;; *) continue ;; esac
    out="$OUT/${r//\//_}-cifar100"
    echo "== $r on cifar100"
    time "$B/train-vision" --device cuda --recipe "$r" --data "cifar100:$CIFAR100" "${extra[@]}" --out "$out" \
      > "$out.log" 2>&1 || { echo "$r FAILED"; tail -5 "$out.log"; continue; }
    tail -6 "$out.log"
  done
fi
# STL-10: no published recipe from either project; solo-learn pretrains on
# train+unlabeled. Its CIFAR SimCLR recipe at 96 px with an ImageNet stem:
if [ -n "${STL10:-}" ]; then
  out="$OUT/stl10-simclr"
  time "$B/train-vision" --device cuda --recipe solo-learn/cifar/simclr --data "stl10:$STL10" --unlabeled \
    --stem imagenet --image-size 96 "${extra[@]}" --out "$out" > "$out.log" 2>&1 || echo "stl10 FAILED"
  tail -6 "$out.log"
fi

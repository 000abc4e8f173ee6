# Sourced by the device scripts (after setting B to their own folder):
# torch's libraries on LD_LIBRARY_PATH (the device image's venv, else the
# python3 that has torch), OUT for results, and `time`'s format.
TIMEFORMAT="wall %R s"
TL=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/torch/lib 2>/dev/null | head -1)
[ -z "$TL" ] && TL=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
export LD_LIBRARY_PATH=$TL
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"

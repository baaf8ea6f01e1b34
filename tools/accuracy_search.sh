#!/bin/bash
# Accuracy search on the GPU through tools/sweep.py, every run at once; the JSON lines go to $OUT.
#   SEARCH=best (default): 6 recipes x 3 seeds of 5-member `best`, 15 epochs (the first sitting's grid).
#   SEARCH=max: the candidates for `--model max`, 3 seeds each, $MEMBERS members x $EPOCHS epochs (default 15 x 35).
#     sweep.py records the first k members after every epoch, so one run per seed holds every k x E of its recipe,
#     and tools/accuracy_frontier.py chooses among them on validation. At 15 x 35 the lecture member trains
#     6.9e14 multiply-adds and the strided one 1.3e15, both under Deotte's 15-net 1.4e15.
# On the device machine: carry .whl (keras, namex, optree wheels for Python 3.12) and .gpudata (MNIST IDX files and
# this script); results in $OUT. On a CPU: set NO_WHEELS=1, OUT and KERASCNN_DATA_DIR, and run fewer recipes at once
# (RECIPES="lecture_ls"; EXTRA="--subset 500" for a look at the plumbing).
if [ -z "${NO_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD KERASCNN_DATA_DIR=${KERASCNN_DATA_DIR:-$PWD/.gpudata/mnist}
  nvidia-smi --query-gpu=name --format=csv,noheader
fi
export KERAS_BACKEND=${KERAS_BACKEND:-jax} XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
: "${OUT:?set OUT to the folder for the results}"
declare -A R
if [ "${SEARCH:-best}" = max ]; then
  members=${MEMBERS:-15} epochs=${EPOCHS:-35}
  R[lecture_ls]="member=lecture rotation=15 shift=2 zoom=0 label_smoothing=0.1"
  R[lecture_ls_zoom]="member=lecture rotation=10 shift=2.8 zoom=0.1 label_smoothing=0.1"
  R[strided_ls]="member=strided rotation=10 shift=2.8 zoom=0.1 label_smoothing=0.1"
else
  members=${MEMBERS:-5} epochs=${EPOCHS:-15}
  R[base]="rotation=15 shift=2 zoom=0 ema=0 label_smoothing=0"
  R[affine]="rotation=10 shift=2.8 zoom=0.1 ema=0 label_smoothing=0"
  R[affine_ema]="rotation=10 shift=2.8 zoom=0.1 ema=0.999 label_smoothing=0"
  R[affine_ema_ls]="rotation=10 shift=2.8 zoom=0.1 ema=0.999 label_smoothing=0.1"
  R[strided_ema]="member=strided rotation=10 shift=2.8 zoom=0.1 ema=0.999 label_smoothing=0"
  R[base_ema]="rotation=15 shift=2 zoom=0 ema=0.999 label_smoothing=0"
fi
names=${RECIPES:-${!R[@]}}
rm -rf /tmp/res && mkdir -p /tmp/res
for name in $names; do
  [ -n "${R[$name]:-}" ] || { echo "unknown recipe '$name'; expected one of: ${!R[*]}" >&2; exit 2; }
  for seed in ${SEEDS:-777 1 2}; do
    flags=""; for kv in ${R[$name]} seed=$seed; do k=${kv%%=*}; flags="$flags --${k//_/-} ${kv#*=}"; done
    timeout ${LIMIT:-500} python3 tools/sweep.py --model best --members $members --epochs $epochs \
      --precision float32 --steps-per-execution 10 $flags ${EXTRA:-} --label "$name seed=$seed" \
      --out /tmp/res/$name-$seed.jsonl > /tmp/res/$name-$seed.log 2>&1 &
  done
done
wait
cat /tmp/res/*.jsonl > $OUT/h200-${SEARCH:-best}-search.jsonl
tail -n 3 /tmp/res/*.log | cut -c1-300 > $OUT/logs.txt
grep -c epoch /tmp/res/*.jsonl

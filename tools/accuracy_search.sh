#!/bin/bash
# Accuracy search on the GPU through tools/sweep.py, every run at once; the JSON lines go to $OUT.
#   SEARCH=best (default): 6 recipes x 3 seeds of 5-member `best`, 15 epochs (the first sitting's grid).
#   SEARCH=max: the candidates for `--model max`, 3 seeds each, $MEMBERS members x $EPOCHS epochs (default 15 x 35).
#     sweep.py records the first k members after every epoch, so one run per seed holds every k x E of its recipe,
#     and tools/accuracy_frontier.py chooses among them on validation. At 15 x 35 the lecture member trains
#     6.9e14 multiply-adds and the strided one 1.3e15, both under Deotte's 15-net 1.4e15.
# Each run stops after LIMIT seconds (default 560, under the device's 10-minute call). On the H200 one 5-member
# process trained 152,778 model-images/s (docs/GPU.md): a 15 x 35 lecture run is about 190 s alone, so start with
# RECIPES=lecture_ls, and check that three such runs finish together before adding the others.
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
case ${SEARCH:=best} in best|max) ;; *) echo "SEARCH must be best or max. Received: SEARCH=$SEARCH" >&2; exit 2;; esac
if [ "$SEARCH" = max ]; then
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
# Each run writes its JSON lines straight into $OUT/runs, epoch by epoch, so a run that the time limit stops
# still comes back (without its summary line, which tools/accuracy_frontier.py needs to count it).
mkdir -p "$OUT/runs"
for name in $names; do
  [ -n "${R[$name]:-}" ] || { echo "unknown recipe '$name'; expected one of: ${!R[*]}" >&2; exit 2; }
  for seed in ${SEEDS:-777 1 2}; do
    flags=""; for kv in ${R[$name]} seed=$seed; do k=${kv%%=*}; flags="$flags --${k//_/-} ${kv#*=}"; done
    rm -f "$OUT/runs/$SEARCH-$name-$seed".*  # sweep.py appends: a rerun starts its files anew
    timeout ${LIMIT:-560} python3 tools/sweep.py --model best --members $members --epochs $epochs \
      --precision float32 --steps-per-execution 10 $flags ${EXTRA:-} --label "$name seed=$seed" \
      --out "$OUT/runs/$SEARCH-$name-$seed.jsonl" > "$OUT/runs/$SEARCH-$name-$seed.log" 2>&1 &
  done
done
wait
cat "$OUT"/runs/$SEARCH-*.jsonl > "$OUT/h200-$SEARCH-search.jsonl"
grep -c summary "$OUT"/runs/$SEARCH-*.jsonl  # 1: the run finished; 0: the time limit stopped it

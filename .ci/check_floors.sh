#!/usr/bin/env bash
# Dependency floors, checked: install every dependency at the lowest version pyproject.toml
# allows (each `>=X` becomes `==X`; torch stays at constraints.txt's pin, the only torch
# this machine can install) into a fresh venv, then run a short smoke suite against it.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$PYTHON" - "$REPO/pyproject.toml" > "$WORK/floors.txt" <<'PY'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
deps = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
for dep in deps:
    m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*([^,;\s]+)", dep)
    if m is None:
        sys.exit(f"dependency without a floor: {dep!r}")
    name, version = m.group(1), m.group(3)
    if name.lower() != "torch":  # pinned by constraints.txt
        print(f"{name}=={version}")
PY
echo "== floors"; cat "$WORK/floors.txt"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --upgrade pip -c constraints.txt
"$WORK/venv/bin/python" -m pip install -q -c constraints.txt -c "$WORK/floors.txt" ".[dev]"
echo "== smoke tests at the floors"
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$WORK/venv/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_index_contract.py -k "bm25 or dense or binary" \
    tests/test_api.py tests/test_speculative.py tests/test_layering.py
echo "floors check passed"

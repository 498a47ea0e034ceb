#!/usr/bin/env bash
# The shipped package, checked as a user gets it: build the wheel, install it into a fresh
# virtual environment (no editable hook, no checkout on sys.path), build a tiny bm25
# collection from the packaged demo corpus, start `specrag serve` on a free loopback port,
# and get a 200 from /health and from a search. The server runs under `python -X
# importtime`: a bm25-only server must never import torch.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

echo "== building the wheel"
"$PYTHON" -m pip wheel -q --no-deps -w "$WORK/dist" "$REPO"
WHEEL=$(ls "$WORK"/dist/specrag-*.whl)
echo "   $(basename "$WHEEL")"

echo "== installing it into a fresh venv"
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -q --upgrade pip -c "$REPO/constraints.txt"
"$VPY" -m pip install -q -c "$REPO/constraints.txt" "$WHEEL"

cd "$WORK"  # nothing of the checkout on the path
export SPECRAG_HOME="$WORK/home" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$VPY" - <<'PY'
import specrag, specrag.api.app, sys
site = [p for p in sys.path if p.endswith("site-packages")][0]
assert specrag.__file__.startswith(site), f"specrag imported from {specrag.__file__}, not the venv"
assert not any("__editable__" in p for p in sys.path), "an editable hook is active"
print(f"   specrag {specrag.__version__} from {specrag.__file__}")
PY

echo "== a tiny bm25 collection from the packaged demo corpus"
CORPUS=$("$VPY" -c "import importlib.resources as r; print(r.files('specrag') / 'demo' / 'scifact-1k.jsonl')")
head -n 200 "$CORPUS" > "$WORK/tiny.jsonl"
"$WORK/venv/bin/specrag" index --collection tiny --corpus "$WORK/tiny.jsonl" --kinds bm25

PORT=$("$VPY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
echo "== specrag serve on 127.0.0.1:$PORT"
"$VPY" -X importtime -m specrag.api.cli serve --host 127.0.0.1 --port "$PORT" \
    >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
"$VPY" - "$PORT" <<'PY'
import json, sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(300):
    try:
        with urllib.request.urlopen(base + "/health", timeout=2) as r:
            assert r.status == 200
            print("   /health:", json.loads(r.read()))
            break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("the server did not answer /health")
body = json.dumps({"query": "stem cells", "k": 3}).encode()
req = urllib.request.Request(base + "/collections/tiny/search", body, {"content-type": "application/json"})
with urllib.request.urlopen(req, timeout=30) as r:
    hits = json.loads(r.read())["hits"]
    assert r.status == 200 and len(hits) == 3, hits
    print("   search:", [h["doc_id"] for h in hits])
# the console's files are package data: the wheel serves every one of them

with urllib.request.urlopen(base + "/ui/", timeout=10) as r:
    page = r.read().decode()
    assert r.status == 200 and "specrag console" in page, page[:200]
modules = ["main.js", "api.js", "dom.js", "hits.js", "settings.js", "search.js", "compare.js", "ask.js", "collections.js"]
for path in ["console.css"] + [f"js/{m}" for m in modules]:
    with urllib.request.urlopen(f"{base}/ui/{path}", timeout=10) as r:
        assert r.status == 200 and r.read(), path
print("   console: /ui/ and its", len(modules) + 1, "files")
with urllib.request.urlopen(base + "/docs", timeout=10) as r:
    page = r.read().decode()
    assert r.status == 200 and "//cdn" not in page and "/docs/assets/swagger-ui-bundle.js" in page
for path in ["swagger-ui-bundle.js", "swagger-ui.css"]:
    with urllib.request.urlopen(f"{base}/docs/assets/{path}", timeout=10) as r:
        assert r.status == 200 and r.read(), path
print("   /docs: Swagger UI from the package (offline)")
PY
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
HEAVY=$(grep -E "\| +(torch|sentence_transformers|transformers)$" "$WORK/serve.err" || true)
if [ -n "$HEAVY" ]; then
    echo "a bm25-only server imported: $HEAVY"; exit 1
fi
echo "   importtime: $(grep -c '^import time:' "$WORK/serve.err") modules imported, none of torch, transformers, sentence_transformers"
echo "wheel check passed"

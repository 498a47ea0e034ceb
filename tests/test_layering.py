"""The house plan, checked: data moves core -> storage -> indexing -> retrieval -> rerank ->
generation -> api, and no module imports from a later stage (function-level imports
included: a lazy import is still a dependency). And a bm25-only server imports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import specrag

PACKAGE = Path(specrag.__file__).resolve().parent
STAGES = ["core", "storage", "indexing", "retrieval", "rerank", "generation", "api"]


def stage_of(module: str) -> str:
    """specrag.<stage>... -> stage; the shared modules (types, settings, atomic) -> core."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else "core"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def specrag_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of specrag code in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("specrag")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("specrag"):
            found.append((node.lineno, node.module))
    return found


def test_no_module_imports_a_later_stage():
    violations = []
    files = [p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts]
    assert len(files) > 50  # the walk found the package
    for path in files:
        importer = module_name(path)
        for line, imported in specrag_imports(path):
            if STAGES.index(stage_of(imported)) > STAGES.index(stage_of(importer)):
                violations.append(f"{path.relative_to(PACKAGE)}:{line} {importer} -> {imported}")
    assert violations == [], "\n".join(violations)


def test_the_check_sees_a_violation(tmp_path):
    """The walk above would catch a lazy back-edge (so the test can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from specrag.api.service import CollectionService\n")
    assert specrag_imports(bad) == [(2, "specrag.api.service")]
    assert STAGES.index(stage_of("specrag.api.service")) > STAGES.index(
        stage_of("specrag.indexing.kinds.bm25.search")
    )


def test_bm25_only_server_imports_no_torch(tmp_path):
    """The app built and serving a bm25 collection (search included) never imports torch,
    sentence-transformers or transformers."""
    script = textwrap.dedent(
        f"""
        import os, sys
        os.environ["SPECRAG_HOME"] = {str(tmp_path)!r}
        from fastapi.testclient import TestClient
        from specrag.api.app import create_app
        from specrag.settings import Settings
        with TestClient(create_app(Settings())) as client:
            assert client.post("/collections", json={{"name": "c", "kinds": ["bm25"]}}).status_code == 201
            docs = [{{"id": str(i), "text": f"cells and proteins number {{i}}"}} for i in range(50)]
            assert client.post("/collections/c/documents", json={{"documents": docs}}).status_code == 200
            job = client.post("/collections/c/builds", json={{}}).json()
            import time
            for _ in range(600):
                if client.get(f"/jobs/{{job['id']}}").json()["status"] in ("succeeded", "failed"):
                    break
                time.sleep(0.1)
            r = client.post("/collections/c/search", json={{"query": "cells", "k": 3}})
            assert r.status_code == 200 and len(r.json()["hits"]) == 3, r.text
        heavy = sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules)
        print("HEAVY=" + ",".join(heavy))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "HEAVY=\n" in out.stdout, out.stdout

"""docs/benchmarks.md is generated from benchmarks/results/*.json: the page must be what the
renderer makes of the committed results (edit a result, rerun the renderer), and every
result must say how it was produced."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RESULTS = sorted((REPO / "benchmarks" / "results").glob("*.json"))


def _renderer():
    spec = importlib.util.spec_from_file_location(
        "render_benchmarks", REPO / "scripts" / "render_benchmarks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_page_is_generated_from_the_results():
    assert RESULTS, "no result files in benchmarks/results"
    page = (REPO / "docs" / "benchmarks.md").read_text()
    assert page == _renderer().render(), "run: python scripts/render_benchmarks.py"


@pytest.mark.parametrize("path", RESULTS, ids=[p.stem for p in RESULTS])
def test_each_result_names_its_command_machine_and_commit(path: Path):
    result = json.loads(path.read_text())
    assert result["name"] == path.stem
    for key in ("title", "command", "machine", "commit", "date"):
        assert result[key], f"{path.name}: empty {key}"
    assert result["tables"], f"{path.name}: no tables"
    for table in result["tables"]:
        assert all(len(row) == len(table["columns"]) for row in table["rows"]), table["caption"]

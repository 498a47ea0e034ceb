"""docs/benchmarks.md is generated from benchmarks/results/*.json: the page must be what the
renderer makes of the committed results (edit a result, rerun the renderer), and every
result must say how it was produced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_script

REPO = Path(__file__).resolve().parent.parent
RESULTS = sorted((REPO / "benchmarks" / "results").glob("*.json"))


def _renderer():
    return load_script("render_benchmarks")


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

"""The updates benchmark's pieces (scripts/bench_updates.py, scripts/live_updates.py): each
run replaces only its own parts of updates.json, and the live part's upserts send
documents that no build encoded."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

from tests.conftest import load_script

bench = load_script("bench_updates")
live = load_script("live_updates")


def _table(caption: str) -> dict:
    return {"caption": caption, "columns": ["a"], "rows": [[1]]}


def test_a_run_replaces_its_parts_and_keeps_the_others(tmp_path: Path):
    old = {
        "tables": [_table("SciFact, first 5183 documents (an old builds table)"),
                   _table("BM25 drift: kept"), _table("Live collection: old")],
        "notes": ["Compare CPU seconds (an old builds note)", "BM25 drift (kept note)",
                  "Live collection (old note)"],
        "data": {"drift": {"kept": 1}, "n_docs": 5183},
    }  # fmt: skip
    (tmp_path / "updates.json").write_text(json.dumps(old))
    args = Namespace(no_write=False, out_dir=tmp_path)
    sections = [
        bench.Section(bench.LIVE, [_table("Live collection: new")], ["Live collection (new)"]),
        bench.Section(
            bench.BUILDS, [_table("Encoding store: new")], ["Encoding store (new)"], {"n_docs": 300}
        ),
    ]
    bench.write_section(sections, args)
    got = json.loads((tmp_path / "updates.json").read_text())
    assert [t["caption"] for t in got["tables"]] == [
        "Encoding store: new", "BM25 drift: kept", "Live collection: new"
    ]  # fmt: skip
    assert got["notes"] == [
        "Encoding store (new)",
        "BM25 drift (kept note)",
        "Live collection (new)",
    ]
    assert got["data"] == {"drift": {"kept": 1}, "n_docs": 300}

    bench.write_section([bench.Section(bench.DRIFT, [_table("BM25 drift: new")])], args)
    got = json.loads((tmp_path / "updates.json").read_text())
    assert [t["caption"] for t in got["tables"]] == [
        "Encoding store: new", "BM25 drift: new", "Live collection: new"
    ]  # fmt: skip
    assert got["notes"] == ["Encoding store (new)", "Live collection (new)"]


def test_no_write_leaves_the_file_alone(tmp_path: Path):
    args = Namespace(no_write=True, out_dir=tmp_path)
    bench.write_section([bench.Section(bench.BUILDS, [_table("Encoding store: x")])], args)
    assert not (tmp_path / "updates.json").exists()


def test_live_upserts_are_new_documents_with_new_texts():
    docs = [live.Document(f"d{i}", f"text {i}", "t") for i in range(3)]
    new = live.fresh(docs, 7)  # more than there are: round after round
    assert len({d.id for d in new}) == 7
    assert not {d.id for d in new} & {d.id for d in docs}
    assert not {d.full_text() for d in new} & {d.full_text() for d in docs}
    assert [d.id for d in new[:4]] == ["d0-live0", "d1-live0", "d2-live0", "d0-live1"]

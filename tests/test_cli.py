"""The `specrag` CLI on a slice of the demo corpus: index + search + eval, and a bad corpus
line reported as ``file:line`` with exit status 2 and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import ir_measures
import pytest

from specrag.api.cli import main
from tests.conftest import DEMO_CORPUS, DEMO_QRELS, DEMO_QUERIES, REPO

N_DOCS = 200


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("cli-home")


@pytest.fixture()
def env(home, monkeypatch):
    monkeypatch.setenv("SPECRAG_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli-corpus") / "slice.jsonl"
    with open(DEMO_CORPUS) as src:
        lines = [next(src) for _ in range(N_DOCS)]
    path.write_text("".join(lines))
    return path


@pytest.fixture()
def indexed(env, corpus, capsys):
    if main(["collections", "--json"]) == 0 and "slice" in capsys.readouterr().out:
        return corpus
    rc = main(["index", "--collection", "slice", "--corpus", str(corpus), "--kinds", "bm25"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert f"indexed {N_DOCS} documents" in out.out
    return corpus


def test_index_then_search_json(indexed, capsys):
    rc = main(
        [
            "search",
            "--collection",
            "slice",
            "--query",
            "glioblastoma stem cells",
            "--k",
            "5",
            "--retriever",
            "bm25",
            "--json",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    body = json.loads(out.out)
    assert len(body["hits"]) == 5
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    first = json.loads(indexed.read_text().splitlines()[0])  # "Targeting A20 ... Glioma Stem Cell"
    assert first["_id"] in [h["doc_id"] for h in body["hits"]]


def test_search_plain_and_filter_error(indexed, capsys):
    assert main(["search", "--collection", "slice", "--query", "insulin", "--k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].lstrip().startswith("1")
    rc = main(["search", "--collection", "slice", "--query", "x", "--filter", "{not json"])
    err = capsys.readouterr().err
    assert rc == 2 and "--filter" in err and "Traceback" not in err


def test_collections_lists_it(indexed, capsys):
    assert main(["collections"]) == 0
    out = capsys.readouterr().out
    assert "slice" in out and str(N_DOCS) in out


def test_eval_prints_measures_and_writes_run(indexed, tmp_path, capsys):
    queries = tmp_path / "queries.jsonl"
    extra = json.dumps({"_id": "no-judgment", "text": "a query without qrels"})
    queries.write_text(DEMO_QUERIES.read_text() + extra + "\n")
    run_out = tmp_path / "run.trec"
    rc = main(
        [
            "eval",
            "--collection",
            "slice",
            "--queries",
            str(queries),
            "--qrels",
            str(DEMO_QRELS),
            "--retriever",
            "bm25",
            "--run-out",
            str(run_out),
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "(1 without judgments skipped)" in out.out
    printed = {
        line.split()[0]: float(line.split()[1])
        for line in out.out.splitlines()
        if line.split() and line.split()[0] in ("nDCG@10", "R@100", "MRR@10")
    }
    assert set(printed) == {"nDCG@10", "R@100", "MRR@10"}
    # The run file is a TREC run (bm25 returns the docs sharing a term with the query, at
    # most the N_DOCS of this slice), and ir-measures over it gives the printed figures.
    run = list(ir_measures.read_trec_run(str(run_out)))
    per_query = {}
    for row in run:
        per_query.setdefault(row.query_id, []).append(row)
    assert len(per_query) == 100 and all(1 <= len(v) <= N_DOCS for v in per_query.values())
    assert max(len(v) for v in per_query.values()) > 100
    qrels = list(ir_measures.read_trec_qrels(str(_trec_qrels(tmp_path))))
    # bm25's quantized scores tie often; the file's rank column is our order, so score by rank.
    ranked = {
        q: {row.doc_id: -float(i) for i, row in enumerate(rows)} for q, rows in per_query.items()
    }
    ranks = [line.split()[3] for line in run_out.read_text().splitlines()[:3]]
    assert ranks == ["1", "2", "3"]
    measures = ir_measures.calc_aggregate(
        [ir_measures.parse_measure(m.replace("MRR", "RR")) for m in printed], qrels, ranked
    )
    for name, value in printed.items():
        assert measures[ir_measures.parse_measure(name.replace("MRR", "RR"))] == pytest.approx(
            value, abs=1e-4
        )
    assert printed["nDCG@10"] > 0.1  # the slice holds the relevant docs of some queries


def _trec_qrels(tmp_path):
    path = tmp_path / "qrels.trec"
    rows = DEMO_QRELS.read_text().splitlines()[1:]
    path.write_text("".join(f"{q} 0 {d} {s}\n" for q, d, s in (r.split("\t") for r in rows)))
    return path


def test_bad_corpus_line_names_file_and_line(env, tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = DEMO_CORPUS.read_text().splitlines()[:2]
    bad.write_text("\n".join([*good, "{this is not json", good[0]]) + "\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "specrag.api.cli",
            "index",
            "--collection",
            "bad",
            "--corpus",
            str(bad),
            "--kinds",
            "bm25",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(env),
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "bad.jsonl" in proc.stderr and "line 3" in proc.stderr
    # Nothing was written: the corpus is validated before any upsert.
    assert main(["search", "--collection", "bad", "--query", "x"]) == 2


def test_skip_bad_lines(env, tmp_path, capsys):
    bad = tmp_path / "skip.jsonl"
    good = DEMO_CORPUS.read_text().splitlines()[:3]
    bad.write_text("\n".join([good[0], "{broken", good[1], good[2]]) + "\n")
    rc = main(
        [
            "index",
            "--collection",
            "skip",
            "--corpus",
            str(bad),
            "--kinds",
            "bm25",
            "--on-error",
            "skip",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "indexed 3 documents" in out.out


def test_a_line_that_is_not_utf8_is_a_bad_record_named_with_its_line_and_the_option(
    env, tmp_path, capsys
):
    bad = tmp_path / "latin1.jsonl"
    good = DEMO_CORPUS.read_text().splitlines()[:3]
    lines = [
        good[0].encode(),
        '{"_id": "x", "text": "caf\u00e9"}'.encode("latin-1"),
        good[1].encode(),
    ]
    bad.write_bytes(b"\n".join(lines) + b"\n")
    args = ["index", "--collection", "latin", "--corpus", str(bad), "--kinds", "bm25"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "line 2: not valid UTF-8" in err and "--on-error skip" in err
    assert main([*args, "--on-error", "skip"]) == 0
    out = capsys.readouterr()
    assert "indexed 2 documents" in out.out
    assert "line 2: not valid UTF-8" in out.err and "--on-error skip" in out.err


def test_kinds_as_json_configure_a_splade_index(env, corpus, tmp_path, capsys):
    # SPLADE needs a model: --kinds takes the REST API's JSON object of kinds and configs.
    import numpy as np

    from specrag.indexing.versions import VersionStore
    from specrag.retrieval.version import open_version
    from tests.tiny_models import tiny_splade_dir

    model = tiny_splade_dir(tmp_path / "tiny-splade")
    kinds = json.dumps({"splade": {"model": str(model), "max_seq_length": 64}})
    rc = main(["index", "--collection", "sparse", "--corpus", str(corpus), "--kinds", kinds])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "(splade)" in out.out
    query = "glioblastoma stem cells"
    rc = main(["search", "--collection", "sparse", "--query", query, "--k", "5",
               "--retriever", "splade", "--json"])  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0, out.err
    got = [h["doc_id"] for h in json.loads(out.out)["hits"]]
    # Against scipy over the stored impacts, by the searcher the index was built for.
    version = open_version(VersionStore(next((env / "collections").glob("sparse.*"))))
    searcher = version.searchers["splade"]
    assert searcher.config.model == str(model)
    scores = searcher.reference_scores([query])[0]
    order = np.lexsort((np.arange(len(scores)), -scores))[:5]
    assert got == [str(version.doc_ids[r]) for r in order if np.isfinite(scores[r])]
    for bad, message in (('{"splade": ', "not valid JSON"), ('{"splade": 3}', "config objects"),
                         ('{"splade": {}}', "model")):  # fmt: skip
        assert (
            main(["index", "--collection", "sparse2", "--corpus", str(corpus), "--kinds", bad]) == 2
        )
        assert message in capsys.readouterr().err


def _env(home):
    import os

    return {**os.environ, "SPECRAG_HOME": str(home)}


def test_demo_rebuilds_a_collection_it_cannot_read(env, corpus, capsys):
    # A demo built by an older specrag (an older impact index format) is rebuilt by
    # `specrag demo` instead of being served with every search failing.
    from specrag.api.cli import DEMO_COLLECTION, _demo_version_opens, _service

    rc = main(["index", "--collection", DEMO_COLLECTION, "--corpus", str(corpus),
               "--kinds", "bm25"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    service = _service()
    try:
        assert _demo_version_opens(service)
        header = next(
            env.glob(f"collections/{DEMO_COLLECTION}.*/versions/*/bm25/impact_index.json")
        )
        header.write_text(json.dumps({**json.loads(header.read_text()), "format": 1}))
        assert not _demo_version_opens(service)
    finally:
        service.close()
    assert "rebuild" in capsys.readouterr().out


def test_reindexing_says_what_was_encoded_and_reused(env, tmp_path, capsys):
    small = tmp_path / "small.jsonl"
    with open(DEMO_CORPUS) as src:
        lines = [next(src) for _ in range(12)]
    small.write_text("".join(lines))
    args = ["index", "--collection", "live", "--corpus", str(small), "--kinds", "dense"]
    assert main(args) == 0
    assert "all-MiniLM-L6-v2 (dense): encoded 12, reused 0" in capsys.readouterr().out
    row = json.loads(lines[3])
    row["text"] += " (revised)"
    lines[3] = json.dumps(row) + "\n"
    small.write_text("".join(lines))
    assert main(args) == 0
    assert "all-MiniLM-L6-v2 (dense): encoded 1, reused 11" in capsys.readouterr().out


def test_refresh_and_merge_commands(env, tmp_path, capsys):
    """`specrag refresh NAME` makes upserted documents searchable (a delta), `specrag merge
    NAME` folds them into a new version without encoding anything again."""
    from specrag.api.service import CollectionService
    from specrag.settings import Settings
    from tests.conftest import demo_documents

    docs = demo_documents(14)
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps({"_id": d.id, "text": d.text}) + "\n" for d in docs[:12]))
    args = ["index", "--collection", "rm", "--corpus", str(small), "--kinds", "dense"]
    assert main(args) == 0
    service = CollectionService(Settings(home=env))
    try:
        service.upsert("rm", docs[12:])
    finally:
        service.close()
    capsys.readouterr()
    assert main(["refresh", "rm"]) == 0
    out = capsys.readouterr().out
    assert "holds 2 documents (0 replace base rows); encoded 2, reused 0" in out
    assert main(["merge", "rm"]) == 0
    out = capsys.readouterr().out
    assert "merged 'rm' into version" in out and "encoded 0, reused 14" in out
    assert main(["refresh", "nothing-here"]) == 2


def test_index_full_and_merge_leave_the_files_of_a_fresh_build(env, tmp_path, monkeypatch, capsys):
    """`specrag index` after a small change keeps colbert's codebook (a cheap rebuild);
    `--full` trains it anew from the stored encodings (encoding nothing), as `specrag merge`
    does: both leave the files of a fresh full build in another home."""
    from specrag.api.service import CollectionService
    from specrag.indexing.readers import read_documents
    from specrag.settings import Settings
    from tests.same_index import assert_same_index, current_path

    # Texts longer than MiniLM's 256 tokens: truncated, so never padded, their encodings
    # do not depend on the batch they were encoded in (a shorter text's differ by float
    # rounding between batches, and the truth encodes in other batches than the rebuilds).
    with open(DEMO_CORPUS) as src:
        rows = (json.loads(line) for line in src)
        lines = [json.dumps(r) + "\n" for r in rows if len(r["title"] + r["text"]) > 2000][:21]
    row = json.loads(lines[3])
    row["text"] = "Revised: " + row["text"]
    edited = [*lines[:3], json.dumps(row) + "\n", *lines[4:]]
    corpora = {"first": lines[:20], "edited": edited[:20], "merged": edited}
    for stem, rows in corpora.items():
        (tmp_path / f"{stem}.jsonl").write_text("".join(rows))
    kinds = json.dumps({"colbert": {"reuse_codebook_below": 0.5}})

    def index(home, stem: str, *extra: str) -> str:
        monkeypatch.setenv("SPECRAG_HOME", str(home))
        corpus = str(tmp_path / f"{stem}.jsonl")
        assert (
            main(["index", "--collection", "fl", "--corpus", corpus, "--kinds", kinds, *extra]) == 0
        )
        return capsys.readouterr().out

    def served(home):
        """The current version's folder and whether its colbert kept a codebook."""
        service = CollectionService(Settings(home=home))
        try:
            path = current_path(service, "fl")
        finally:
            service.close()
        manifest = json.loads((path / "manifest.json").read_text())
        return path, manifest["kinds"]["colbert"]["stats"]["codebook"]["reused"]

    index(env, "first")
    assert "encoded 1, reused 19" in index(env, "edited")
    assert served(env)[1] is True
    assert "encoded 0, reused 20" in index(env, "edited", "--full")
    assert served(env)[1] is False
    index(tmp_path / "truth", "edited")
    assert_same_index(served(env)[0], served(tmp_path / "truth")[0])

    monkeypatch.setenv("SPECRAG_HOME", str(env))
    service = CollectionService(Settings(home=env))
    try:
        service.upsert("fl", list(read_documents(tmp_path / "merged.jsonl"))[20:])
    finally:
        service.close()
    assert main(["refresh", "fl"]) == 0
    assert main(["merge", "fl"]) == 0
    assert "encoded 0, reused 21" in capsys.readouterr().out
    assert served(env)[1] is False
    index(tmp_path / "truth2", "merged")
    assert_same_index(served(env)[0], served(tmp_path / "truth2")[0])

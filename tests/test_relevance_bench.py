"""The relevance benchmark's pieces (scripts/fetch_collections.py, scripts/bench_relevance.py):
the collection parsers and split, the source checksum, the leave-one-out choice, and that
the offline fusion of cached lists ranks exactly as the search pipeline does."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import demo_documents, demo_queries, load_script

REPO = Path(__file__).resolve().parent.parent


fetch = load_script("fetch_collections")

SMART = """.I 1
.T
wing flutter
.A
someone
.W
flutter of a wing
in a slipstream .
.I 2
.T
a title only
.I 3
.W
heat transfer
"""


def test_smart_records_take_title_and_body():
    docs = fetch.smart_docs(SMART)
    assert docs == [
        {"_id": "1", "title": "wing flutter", "text": "flutter of a wing in a slipstream ."},
        {"_id": "2", "title": "a title only", "text": "a title only"},
        {"_id": "3", "title": "", "text": "heat transfer"},
    ]


def test_cranfield_numbers_queries_in_file_order_and_inverts_codes():
    files = {
        "docs": SMART,
        "queries": ".I 001\n.W\nfirst query\n.I 004\n.W\nsecond query\n",
        "qrels": "1 1 2\n1 3 -1\n2 2 4\n2 3 1\n",
    }
    docs, queries, qrels = fetch.cranfield(files.__getitem__)
    assert queries == {"1": "first query", "2": "second query"}  # .I 004 is query 2
    # code 1 = complete answer (gain 4) ... 4 = minimum interest (gain 1); -1 dropped
    assert qrels == {"1": {"1": 3}, "2": {"2": 1, "3": 4}}


def test_smart_binary_reads_padded_ids_as_numbers():
    # CACM pads query ids in its qrels ("01"); CISI, MED and ADI do not
    files = {
        "docs": SMART,
        "queries": ".I 1\n.W\nfirst query\n.I 2\n.W\nsecond\n",
        "qrels": "01 3  0 0\n01 001 0 0\n2 2 1\n",
    }
    docs, queries, qrels = fetch.smart_binary(files.__getitem__)
    assert [d["_id"] for d in docs] == ["1", "2", "3"]
    assert queries == {"1": "first query", "2": "second"}
    assert qrels == {"1": {"3": 1, "1": 1}, "2": {"2": 1}}


def test_lisa_records_orphans_and_repeats(monkeypatch):
    doc_files = {
        "docs/a": "Document    1\nA TITLE\nON TWO LINES\n     \nTHE BODY.\n****\n"
        "Document 2\nONLY A TITLE\n****\nA FRAGMENT WITHOUT HEADER\n****\n",
        "docs/b": "Document 2\nONLY A TITLE, AGAIN\n****\nDocument 3\nT\n\nB\n****\n",
    }
    files = {
        **doc_files,
        "queries": "1\nFIRST\nQUERY. #\n2\nSECOND #\n",
        "qrels": "Query 1\n2 Relevant Refs:\n3 1 -1\n \nQuery 2\n1 Relevant Refs:\n2 -1\n",
    }
    monkeypatch.setattr(fetch, "LISA_DOCS", (("a", ""), ("b", "")))
    docs, queries, qrels = fetch.lisa(files.__getitem__)
    assert docs == [
        {"_id": "1", "title": "A TITLE ON TWO LINES", "text": "THE BODY."},
        # the headerless record continues document 2; its repeat in file b is dropped
        {"_id": "2", "title": "ONLY A TITLE", "text": "ONLY A TITLE A FRAGMENT WITHOUT HEADER"},
        {"_id": "3", "title": "T", "text": "B"},
    ]
    assert queries == {"1": "FIRST QUERY.", "2": "SECOND"}
    assert qrels == {"1": {"3": 1, "1": 1}, "2": {"2": 1}}


def test_npl_records_end_with_a_slash():
    text = "1\nfirst doc\ncontinues\n   /\n2\nsecond\n   /\n"
    assert list(fetch.slash_records(text)) == [("1", "first doc continues"), ("2", "second")]


def test_nfcorpus_keeps_its_own_splits(tmp_path, monkeypatch):
    files = {
        "dev-docs": "MED-1\tstatin breast cancer\nMED-2\tfried food acrylamide\n",
        "test-docs": "MED-2\tfried food acrylamide\nMED-3\tvitamin d bone\n",
        "dev-queries": "PLAIN-1\twhy deep fried foods may cause cancer\n",
        "test-queries": "PLAIN-2\tstatins and breast cancer\nPLAIN-3\tbones\n",
        "dev-qrels": "PLAIN-1\t0\tMED-2\t2\nPLAIN-1\t0\tMED-1\t1\n",
        "test-qrels": "PLAIN-2\t0\tMED-1\t2\nPLAIN-3\t0\tMED-3\t1\n",
    }
    docs, queries, qrels = fetch.nfcorpus(files.__getitem__)
    assert [d["_id"] for d in docs] == ["MED-1", "MED-2", "MED-3"]  # the union, once each
    assert qrels == {"PLAIN-1": {"MED-2": 2, "MED-1": 1}, "PLAIN-2": {"MED-1": 2},
                     "PLAIN-3": {"MED-3": 1}}  # fmt: skip
    sources = {k: fetch.Source("o/r", "c" * 40, k, "") for k in files}
    collection = fetch.Collection("nf", "test", fetch.nfcorpus, sources, splits=fetch.nfcorpus_splits)  # fmt: skip  # noqa: E501
    monkeypatch.setattr(fetch.Source, "read", lambda self, mirror: files[self.path].encode())
    info = fetch.build(collection, tmp_path, None)
    assert info["queries"] == {"dev": 1, "test": 2}  # as NFCorpus splits them, not the hash
    test = (tmp_path / "nf" / "qrels" / "test.tsv").read_text().splitlines()
    assert test == ["query-id\tcorpus-id\tscore", "PLAIN-2\tMED-1\t2", "PLAIN-3\tMED-3\t1"]


def test_split_is_fixed_and_halves_the_queries():
    splits = [fetch.split_of("cisi", str(q)) for q in range(1, 401)]
    assert splits == [fetch.split_of("cisi", str(q)) for q in range(1, 401)]
    assert 150 < splits.count("dev") < 250
    # the collection's name enters the hash: another collection splits differently
    assert splits != [fetch.split_of("npl", str(q)) for q in range(1, 401)]


def test_source_refuses_bytes_with_another_checksum(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.txt").write_text("hello\n")
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "add", "data.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    mirror = tmp_path / "mirror"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(mirror / "o+r" / "repo")])
    good = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"  # sha256("hello\n")
    assert fetch.Source("o/r", commit.strip(), "data.txt", good).read(mirror) == b"hello\n"
    with pytest.raises(ValueError, match="sha256"):
        fetch.Source("o/r", commit.strip(), "data.txt", "0" * 64).read(mirror)


def test_leave_one_out_never_looks_at_the_left_out_collection():
    bench = load_script("bench_relevance")
    specs = [bench.CollectionSpec(n, Path("."), "dev") for n in ("x", "y", "z")]
    rules = [bench.Rule("a", "f", None), bench.Rule("b", "f", None)]
    scores = bench.Scores(specs, rules, cache=None)
    table = {("a", "x"): 0.9, ("b", "x"): 0.1, ("a", "y"): 0.4, ("b", "y"): 0.5}
    table |= {("a", "z"): 0.4, ("b", "z"): 0.5}
    for (rule, coll), value in table.items():
        scores.values[(rule, coll, "dev")] = {"nDCG@10": np.array([value])}
    assert bench.choose(scores, rules, specs).name == "a"  # 0.567 vs 0.367 on all three
    assert bench.choose(scores, rules, specs[1:]).name == "b"  # without x


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """A 60-document collection built by the service (bm25, dense, colbert), its lists
    cached by the benchmark, and the version they came from."""
    import torch

    bench = load_script("bench_relevance")
    root = tmp_path_factory.mktemp("relevance")
    docs, texts = demo_documents(60), demo_queries(8)
    data = root / "data"
    (data / "qrels").mkdir(parents=True)
    with open(data / "corpus.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"_id": d.id, "title": d.title or "", "text": d.text}) + "\n")
    with open(data / "queries.jsonl", "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"_id": f"q{i}", "text": t}) + "\n")
    for split, qids in (("dev", range(0, 4)), ("test", range(4, 8))):
        rels = "".join(f"q{i}\t{docs[i * 3].id}\t1\n" for i in qids)
        (data / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rels)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    spec = bench.CollectionSpec("tiny", data, "dev")
    version = bench.open_collection(spec, root / "home", {})
    bench.cache_lists(spec, version, root / "cache", set())
    torch.set_num_threads(before)
    return bench, bench.load_candidates(spec, "test", root / "cache"), version


@pytest.mark.parametrize(
    "rule, request_fields",
    [
        ("default", {"retriever": "hybrid"}),
        ("rrf k=60 d=100", {"fusion": "rrf"}),
        ("minmax 0.5:0.5 d=100", {"fusion": "convex", "normalization": "minmax"}),
        (
            "zscore 0.6:0.4 d=100",
            {"fusion": "convex", "normalization": "zscore", "weights": (0.6, 0.4)},
        ),
        (
            "zscore 0.6:0.4 d=100 + MaxSim",
            {
                "fusion": "convex",
                "normalization": "zscore",
                "weights": (0.6, 0.4),
                "rerank": "maxsim",
            },
        ),
    ],
)
def test_offline_rules_rank_as_the_pipeline_does(cached, rule, request_fields):
    from specrag.rerank import make_reranker
    from specrag.rerank.stage import RerankStage
    from specrag.retrieval import pipeline
    from specrag.retrieval.recipe import HYBRID
    from specrag.retrieval.request import RerankSpec, RetrieverSpec, SearchRequest

    bench, candidates, version = cached
    if rule == "default":  # the shipped recipe, whatever it is
        rule = bench.recipe_rule(HYBRID)
    fields = dict(request_fields)
    stages = []
    if fields.pop("rerank", None):
        reranker = make_reranker("maxsim", None, version, HYBRID.maxsim_fusion)
        stages = [RerankStage(reranker, 100, None)]
        fields["rerank"] = RerankSpec(method="maxsim")
    else:
        fields["rerank"] = None
    if "retriever" not in fields:
        w_bm25, w_dense = fields.pop("weights", (1.0, 1.0))
        fields["retrievers"] = [
            RetrieverSpec(kind="bm25", weight=w_bm25, k=100),
            RetrieverSpec(kind="dense", weight=w_dense, k=100),
        ]
    request = SearchRequest(query="x", k=20, **fields)
    queries = [candidates.queries[q] for q in candidates.query_ids]
    expected = pipeline.search_batch(version, queries, request, stages=stages).hits
    run = {r.name: r for r in bench.candidate_rules()}[rule].run(candidates)
    for qid, hits in zip(candidates.query_ids, expected, strict=True):
        assert [d for d, _ in run[qid][:20]] == [h.doc_id for h in hits]
        assert [s for _, s in run[qid][:20]] == pytest.approx(
            [h.score for h in hits], rel=1e-5, abs=1e-6
        )  # the cache keeps float32 scores as JSON decimals

"""Readers: every format maps records the same way; bad records fail or skip with a
message naming file and line; queries and qrels in BEIR and TREC forms."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from specrag.indexing.readers import (
    ReaderError,
    ReadStats,
    read_documents,
    read_qrels,
    read_queries,
)
from specrag.types import Document
from tests.conftest import DEMO_CORPUS, DEMO_QRELS, DEMO_QUERIES

RECORDS = [
    {"_id": "a", "title": "Alpha", "text": "first text", "year": 2001, "metadata": {"src": "x"}},
    {"_id": "b", "text": "second text", "tags": ["t1", "t2"], "nested": {"k": 1}},
    {"id": 7, "title": "", "text": "third text", "year": None},
]
EXPECTED = [
    Document("a", "first text", "Alpha", {"year": 2001, "src": "x"}),
    Document("b", "second text", None, {"tags": ["t1", "t2"], "nested": {"k": 1}}),
    Document("7", "third text", None, {"year": None}),
]


def write_jsonl(path: Path, lines: list) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        for line in lines:
            f.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


def test_jsonl_plain_and_gzipped(tmp_path):
    for name in ["c.jsonl", "c.jsonl.gz", "c.json"]:
        path = write_jsonl(tmp_path / name, [RECORDS[0], "", RECORDS[1], RECORDS[2]])
        assert list(read_documents(path)) == EXPECTED


def test_nested_metadata_wins_and_underscore_id_wins(tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"_id": "x", "id": "other", "text": "t", "k": 1, "metadata": {"k": 2, "m": 3}},
        ],
    )
    assert list(read_documents(path)) == [Document("x", "t", None, {"id": "other", "k": 2, "m": 3})]


def test_beir_directory(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", RECORDS)
    assert list(read_documents(tmp_path)) == EXPECTED
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReaderError, match="without corpus.jsonl"):
        list(read_documents(empty))


def test_csv_and_tsv(tmp_path):
    for name, delimiter in [("c.csv", ","), ("c.tsv", "\t")]:
        path = tmp_path / name
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter=delimiter)
            writer.writerow(["_id", "title", "text", "year", "metadata"])
            writer.writerow(["a", "Alpha", 'first, "quoted"\nmultiline', "2001", '{"src": "x"}'])
            writer.writerow(["b", "", "second", "", ""])
        assert list(read_documents(path)) == [
            Document("a", 'first, "quoted"\nmultiline', "Alpha", {"year": "2001", "src": "x"}),
            Document("b", "second", None, {}),
        ]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,body\nx,y\n")
    with pytest.raises(ReaderError, match=r"bad.csv, line 1: the header must name an id"):
        list(read_documents(bad))


def test_parquet_streams_record_batches(tmp_path, monkeypatch):
    import specrag.indexing.readers as readers

    monkeypatch.setattr(readers, "PARQUET_BATCH", 2)
    table = pa.table(
        {
            "_id": ["a", "b", "7"],
            "title": ["Alpha", None, ""],
            "text": ["first text", "second text", "third text"],
            "year": [2001, None, None],
            "src": ["x", None, None],
        }
    )
    path = tmp_path / "c.parquet"
    pq.write_table(table, path)
    assert list(read_documents(path)) == [
        Document("a", "first text", "Alpha", {"year": 2001, "src": "x"}),
        Document("b", "second text", None, {}),
        Document("7", "third text", None, {}),
    ]
    pq.write_table(pa.table({"_id": ["a", "b"], "text": ["ok", ""]}), path)
    assert [d.text for d in read_documents(path)] == ["ok", ""]  # an empty document is one


BAD_LINES = [
    ('{"_id": "ok1", "text": "fine"}', None),
    ('{"title": "no id", "text": "t"}', "line 2: missing id"),
    ('{"_id": "n", "text": 5}', "line 3: document 'n': text must be a string, got a number"),
    ('{"_id": "m"}', "line 4: document 'm': missing text"),
    ('{"_id": "j", "text": "t"', "line 5: invalid JSON"),
    ('["an", "array"]', "line 6: expected an object, got an array"),
    ('{"_id": "ok1", "text": "again"}', "line 7: duplicate id 'ok1'"),
    ('{"_id": "nan", "text": "t", "x": NaN}', "line 8: invalid JSON: NaN is not valid JSON"),
    (
        '{"_id": "md", "text": "t", "metadata": [1]}',
        "line 9: document 'md': metadata must be an object",
    ),
    ('{"_id": true, "text": "t"}', "line 10: id must be a string or an integer"),
    ('{"_id": "ok2", "text": "fine too"}', None),
]


@pytest.mark.parametrize("index", [i for i, (_, err) in enumerate(BAD_LINES) if err])
def test_each_bad_line_fails_naming_file_and_line(tmp_path, index):
    # Good filler lines before the bad one keep its line number; "ok1" stays first.
    lines = [BAD_LINES[0][0]]
    lines += [json.dumps({"_id": f"fill{i}", "text": "t"}) for i in range(1, index)]
    lines.append(BAD_LINES[index][0])
    path = write_jsonl(tmp_path / "corpus.jsonl", lines)
    with pytest.raises(ReaderError) as info:
        list(read_documents(path))
    assert str(info.value).startswith(f"{path}, {BAD_LINES[index][1]}")


def test_skip_policy_counts_and_keeps_first_messages(tmp_path):
    path = write_jsonl(tmp_path / "corpus.jsonl", [line for line, _ in BAD_LINES])
    stats = ReadStats(max_errors=3)
    docs = list(read_documents(path, on_error="skip", stats=stats))
    assert [d.id for d in docs] == ["ok1", "ok2"]
    assert docs[0].text == "fine"  # a duplicate keeps the first occurrence
    assert (stats.read, stats.skipped) == (2, 9)
    assert len(stats.errors) == 3 and "line 2: missing id" in stats.errors[0]
    as_dict: dict = {}
    assert len(list(read_documents(path, on_error="skip", stats=as_dict))) == 2
    assert as_dict["skipped"] == 9 and as_dict["read"] == 2
    with pytest.raises(ValueError, match="on_error"):
        list(read_documents(path, on_error="ignore"))


def test_unsupported_and_missing_files(tmp_path):
    (tmp_path / "c.xml").write_text("<x/>")
    with pytest.raises(ReaderError, match="unsupported file type"):
        list(read_documents(tmp_path / "c.xml"))
    with pytest.raises(ReaderError, match="no such file"):
        list(read_documents(tmp_path / "missing.jsonl"))
    (tmp_path / "arr.json").write_text('[\n{"_id": "a", "text": "t"}\n]\n')
    with pytest.raises(ReaderError, match="JSON lines"):
        list(read_documents(tmp_path / "arr.json"))


def test_demo_corpus_matches_the_plain_json_parse():
    docs = list(read_documents(DEMO_CORPUS))
    with open(DEMO_CORPUS) as f:
        rows = [json.loads(line) for line in f]
    assert len(docs) == len(rows) == 1000
    for d, row in zip(docs, rows, strict=True):
        assert (d.id, d.title, d.text) == (row["_id"], row["title"] or None, row["text"])


def test_queries_jsonl_tsv_and_errors(tmp_path):
    queries = read_queries(DEMO_QUERIES)
    with open(DEMO_QUERIES) as f:
        rows = [json.loads(line) for line in f]
    assert queries == {row["_id"]: row["text"] for row in rows}
    tsv = tmp_path / "q.tsv"
    tsv.write_text("query-id\ttext\n1\tfirst query\n2\tsecond\twith tab\n")
    assert read_queries(tsv) == {"1": "first query", "2": "second\twith tab"}
    tsv.write_text("1\tfirst\n1\tagain\n")
    with pytest.raises(ReaderError, match=r"q.tsv, line 2: duplicate query id '1'"):
        read_queries(tsv)
    tsv.write_text("1 no tab\n")
    with pytest.raises(ReaderError, match="line 1: expected"):
        read_queries(tsv)


def test_qrels_beir_and_trec(tmp_path):
    qrels = read_qrels(DEMO_QRELS)
    lines = DEMO_QRELS.read_text().splitlines()[1:]
    assert sum(len(v) for v in qrels.values()) == len(lines)
    qid, docid, score = lines[0].split("\t")
    assert qrels[qid][docid] == int(score)
    trec = tmp_path / "q.trec"
    trec.write_text("1 0 d1 2\n1 0 d2 0\n2 Q0 d1 1\n")
    assert read_qrels(trec) == {"1": {"d1": 2, "d2": 0}, "2": {"d1": 1}}
    trec.write_text("1 0 d1 2\n1 0 d1 1\n")
    with pytest.raises(ReaderError, match="line 2: query '1' document 'd1' judged twice"):
        read_qrels(trec)
    trec.write_text("1 0 d1 2\n1 0 d2 high\n")
    with pytest.raises(ReaderError, match="line 2: relevance 'high'"):
        read_qrels(trec)


@pytest.mark.parametrize("name", ["c.jsonl", "c.jsonl.gz", "c.tsv", "c.csv.gz"])
def test_a_line_that_is_not_utf8_is_one_bad_record(tmp_path, name):
    sep = "\t" if ".tsv" in name else ","
    if ".jsonl" in name:
        lines = [
            b'{"_id": "a", "text": "ok"}',
            '{"_id": "b", "text": "caf\u00e9"}'.encode("latin-1"),
        ]
        lines.append(b'{"_id": "c", "text": "ok"}')
        bad_line = 2
    else:
        lines = [
            f"_id{sep}text".encode(),
            f"a{sep}ok".encode(),
            f"b{sep}caf\u00e9".encode("latin-1"),
        ]
        lines.append(f"c{sep}ok".encode())
        bad_line = 3
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(ReaderError) as info:
        list(read_documents(path))
    assert str(info.value) == f"{path}, line {bad_line}: not valid UTF-8 (byte 0xe9 at byte " + (
        "26 of the line)" if ".jsonl" in name else "6 of the line)"
    )
    stats = ReadStats()
    assert [d.id for d in read_documents(path, on_error="skip", stats=stats)] == ["a", "c"]
    assert stats.skipped == 1 and f"line {bad_line}: not valid UTF-8" in stats.errors[0]


def test_beir_qrels_split_on_tabs_so_ids_with_spaces_load(tmp_path):
    path = tmp_path / "qrels.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq 1\tdoc one\t1\nq 1\tdoc two\t0\nq2\td3\t2\n")
    assert read_qrels(path) == {"q 1": {"doc one": 1, "doc two": 0}, "q2": {"d3": 2}}
    trec = tmp_path / "qrels.trec"
    trec.write_text("q1 0 d1 1\nq1  0  d2  0\n")  # TREC: any whitespace
    assert read_qrels(trec) == {"q1": {"d1": 1, "d2": 0}}


def test_a_trec_run_with_whitespace_in_an_id_is_refused_and_nothing_is_written(tmp_path):
    from specrag.retrieval.evaluation import TrecFormatError, write_trec_run
    from specrag.types import Hit

    path = tmp_path / "run.trec"
    write_trec_run(path, {"q1": [Hit("d1", 1.0, {})]})
    assert path.read_text() == "q1 Q0 d1 1 1.000000 specrag\n"
    for run in ({"q 1": [Hit("d1", 1.0, {})]}, {"q1": [Hit("d\t1", 1.0, {})]}):
        with pytest.raises(TrecFormatError, match="whitespace"):
            write_trec_run(tmp_path / "bad.trec", run)
    assert not (tmp_path / "bad.trec").exists()

"""Corpus, query and qrels readers: JSON lines (optionally gzipped), CSV/TSV, Parquet and
the BEIR directory layout. Everything streams: one line, row or record batch at a time.

Records map to documents the same way in every format:

- id: ``_id``, else ``id`` (a string, or an integer turned into one); when both are
  present ``_id`` is the id and ``id`` stays in the metadata;
- ``text``: required, a string, which may be empty (the document is still fetchable and
  filterable); ``title``: optional string (empty means none);
- every other field goes to ``metadata``, and a nested ``metadata`` object is merged on
  top (its keys win). CSV/TSV cells are strings and empty cells are left out; Parquet
  nulls are left out; JSON ``null`` is kept.

Error policy: a record with a missing id, a missing text, invalid JSON, a
non-object line or an id already seen in the same file is a :class:`ReaderError` that
names the file, the line (or row) and the reason. ``on_error="fail"`` (the default) stops
at the first one; ``on_error="skip"`` skips the record (for a duplicate id, the later
occurrence), counts it in ``ReadStats.skipped`` and keeps the first
``ReadStats.max_errors`` messages. Problems with the file itself (unknown format, a CSV
header without id or text columns, an unreadable file) always fail.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import gzip
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from specrag.errors import UserError
from specrag.types import Document

OnError = Literal["fail", "skip"]
#: Records per Parquet record batch.
PARQUET_BATCH = 1024
_JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
_QUERY_HEADER_IDS = {"query-id", "query_id", "qid", "id", "_id"}


class ReaderError(UserError, ValueError):
    """A bad input record or file; ``str()`` names the file, the line or row, and why."""

    def __init__(self, path: Path | str, reason: str, line: int | None = None, unit: str = "line"):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}, {unit} {line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


@dataclass
class ReadStats:
    """What a read did: records yielded, records skipped, the first error messages."""

    read: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    max_errors: int = 20

    def record_error(self, error: ReaderError) -> None:
        self.skipped += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(str(error))


# -- documents ------------------------------------------------------------------------
def read_documents(
    path: Path | str,
    on_error: OnError = "fail",
    stats: ReadStats | MutableMapping[str, Any] | None = None,
) -> Iterator[Document]:
    """Stream the documents of ``path``: ``.jsonl``/``.json``/``.ndjson`` (JSON lines,
    optionally ``.gz``), ``.csv``/``.tsv`` (optionally ``.gz``), ``.parquet``, or a BEIR
    directory (``corpus.jsonl[.gz]`` inside). See the module docstring for the mapping
    and the error policy. ``stats`` (a ReadStats, or a dict that receives the keys
    ``read``, ``skipped`` and ``errors`` when the read ends) reports what happened."""
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    own = stats if isinstance(stats, ReadStats) else ReadStats()
    try:
        yield from _documents(_corpus_file(Path(path)), on_error, own)
    finally:
        if isinstance(stats, MutableMapping):
            stats.update(read=own.read, skipped=own.skipped, errors=list(own.errors))


def _corpus_file(path: Path) -> Path:
    if path.is_dir():
        for name in ("corpus.jsonl", "corpus.jsonl.gz"):
            if (path / name).is_file():
                return path / name
        raise ReaderError(path, "a directory without corpus.jsonl (expected the BEIR layout)")
    if not path.is_file():
        raise ReaderError(path, "no such file")
    return path


def _format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(_JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".tsv"):
        return "tsv"
    if name.endswith((".parquet", ".pq")):
        if path.name.lower().endswith(".gz"):
            raise ReaderError(path, "gzipped Parquet is not supported (Parquet compresses itself)")
        return "parquet"
    raise ReaderError(path, "unsupported file type; use .jsonl, .json, .csv, .tsv or .parquet")


def _documents(path: Path, on_error: OnError, stats: ReadStats) -> Iterator[Document]:
    fmt = _format(path)
    if fmt == "jsonl":
        records = _jsonl_records(path)
    elif fmt in ("csv", "tsv"):
        records = _csv_records(path, "\t" if fmt == "tsv" else ",")
    else:
        records = _parquet_records(path)
    seen: set[str] = set()
    for number, record, unit in records:
        try:
            if isinstance(record, ReaderError):
                raise record
            document = record_to_document(record, path, number, unit)
            if document.id in seen:
                raise ReaderError(path, f"duplicate id {document.id!r}", number, unit)
        except ReaderError as error:
            if on_error == "fail":
                raise
            stats.record_error(error)
            continue
        seen.add(document.id)
        stats.read += 1
        yield document


def record_to_document(record: Any, path: Path | str, number: int, unit: str = "line") -> Document:
    """One record (a parsed JSON object, CSV row or Parquet row) as a Document."""

    def fail(reason: str) -> ReaderError:
        return ReaderError(path, reason, number, unit)

    if not isinstance(record, Mapping):
        raise fail(f"expected an object, got {_json_kind(record)}")
    fields = dict(record)
    if "_id" in fields:
        raw_id = fields.pop("_id")
    elif "id" in fields:
        raw_id = fields.pop("id")
    else:
        raise fail("missing id (no '_id' or 'id' field)")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise fail(f"id must be a string or an integer, got {_json_kind(raw_id)}")
    doc_id = str(raw_id)
    if not doc_id.strip():
        raise fail("empty id")
    text = fields.pop("text", None)
    if text is None:
        raise fail(f"document {doc_id!r}: missing text")
    if not isinstance(text, str):
        raise fail(f"document {doc_id!r}: text must be a string, got {_json_kind(text)}")
    title = fields.pop("title", None)
    if title is not None and not isinstance(title, str):
        raise fail(f"document {doc_id!r}: title must be a string, got {_json_kind(title)}")
    nested = fields.pop("metadata", None)
    if nested is not None and not isinstance(nested, Mapping):
        raise fail(f"document {doc_id!r}: metadata must be an object, got {_json_kind(nested)}")
    metadata = {**fields, **(nested or {})}
    return Document(id=doc_id, text=text, title=title or None, metadata=metadata)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


# -- formats: each yields (line or row number, record or ReaderError, unit) ------------
def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _open_bytes(path: Path) -> io.BufferedIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _utf8_lines(raw: Iterable[bytes], bad: dict[int, str]) -> Iterator[str]:
    """Decode line by line, so one line that is not UTF-8 is a bad record (its number and
    reason land in ``bad``; the line is decoded with replacement characters) rather than
    an unreadable file."""
    for number, line in enumerate(raw, start=1):
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad[number] = (
                f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at byte {exc.start + 1} of the line)"
            )
            yield line.decode("utf-8", errors="replace")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _jsonl_records(path: Path) -> Iterator[tuple[int, Any, str]]:
    bad: dict[int, str] = {}
    with _open_bytes(path) as f:
        try:
            for number, line in enumerate(_utf8_lines(f, bad), start=1):
                if number in bad:
                    yield number, ReaderError(path, bad.pop(number), number), "line"
                    continue
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line, parse_constant=_reject_constant), "line"
                except ValueError as exc:
                    reason = f"invalid JSON: {getattr(exc, 'msg', exc)}"
                    if number == 1 and line.lstrip().startswith("["):
                        reason += " (a JSON array? write one object per line: JSON lines)"
                    yield number, ReaderError(path, reason, number), "line"
        except (UnicodeDecodeError, OSError, EOFError) as exc:
            raise ReaderError(path, f"unreadable: {exc}") from exc


def _csv_records(path: Path, delimiter: str) -> Iterator[tuple[int, Any, str]]:
    csv.field_size_limit(2**31 - 1)  # documents longer than csv's 128 KiB default
    bad: dict[int, str] = {}
    with _open_bytes(path) as f:
        try:
            reader = csv.DictReader(_utf8_lines(f, bad), delimiter=delimiter)
            header = reader.fieldnames or []
            if not ({"_id", "id"} & set(header)) or "text" not in header:
                raise ReaderError(
                    path,
                    f"the header must name an id column ('_id' or 'id') and 'text'; got {header}",
                    1,
                )
            if 1 in bad:
                raise ReaderError(path, f"header: {bad[1]}", 1)
            last = reader.line_num
            for row in reader:
                first, number, last = last + 1, reader.line_num, reader.line_num
                undecodable = [n for n in range(first, number + 1) if n in bad]
                if undecodable:  # a row (quoted cells may span lines) with a bad line
                    reason = bad[undecodable[0]]
                    for n in undecodable:
                        del bad[n]
                    yield number, ReaderError(path, reason, undecodable[0]), "line"
                    continue
                if None in row:
                    yield (
                        number,
                        ReaderError(path, "more cells than the header names", number),
                        "line",
                    )
                    continue
                if "metadata" in row and row["metadata"]:
                    try:
                        row["metadata"] = json.loads(
                            row["metadata"], parse_constant=_reject_constant
                        )
                    except ValueError as exc:
                        yield (
                            number,
                            ReaderError(path, f"metadata cell is not JSON: {exc}", number),
                            "line",
                        )
                        continue
                record = {k: v for k, v in row.items() if v not in (None, "") or k == "text"}
                yield number, record, "line"
        except (UnicodeDecodeError, OSError, EOFError, csv.Error) as exc:
            raise ReaderError(path, f"unreadable: {exc}") from exc


def _parquet_records(path: Path) -> Iterator[tuple[int, Any, str]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise ReaderError(path, f"not a readable Parquet file: {exc}") from exc
    names = set(parquet.schema_arrow.names)
    if not ({"_id", "id"} & names) or "text" not in names:
        raise ReaderError(
            path, f"the columns must include an id ('_id' or 'id') and 'text'; got {sorted(names)}"
        )
    number = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH):
        for row in batch.to_pylist():
            number += 1
            try:
                record = {k: _plain(v, path, number) for k, v in row.items() if v is not None}
            except ReaderError as error:
                yield number, error, "row"
                continue
            yield number, record, "row"


def _plain(value: Any, path: Path, number: int) -> Any:
    """A Parquet value as JSON: dates as ISO strings, decimals as numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ReaderError(path, f"{value} is not a JSON number", number, "row")
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, path, number) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, path, number) for v in value]
    raise ReaderError(
        path, f"a {type(value).__name__} value cannot be stored as JSON", number, "row"
    )


# -- queries and qrels ----------------------------------------------------------------
def read_queries(path: Path | str) -> dict[str, str]:
    """Query id -> text from BEIR ``queries.jsonl`` (``_id``/``id`` and ``text``; a BEIR
    directory works too) or a two-column TSV (id, text; a header row is skipped)."""
    path = Path(path)
    if path.is_dir():
        path = path / "queries.jsonl"
    if not path.is_file():
        raise ReaderError(path, "no such file")
    queries: dict[str, str] = {}
    fmt = _format(path) if not path.name.lower().endswith((".txt", ".txt.gz")) else "tsv"
    if fmt == "jsonl":
        for number, record, _ in _jsonl_records(path):
            if isinstance(record, ReaderError):
                raise record
            if not isinstance(record, Mapping):
                raise ReaderError(path, f"expected an object, got {_json_kind(record)}", number)
            qid = record.get("_id", record.get("id"))
            text = record.get("text")
            if isinstance(qid, bool) or not isinstance(qid, str | int) or not str(qid).strip():
                raise ReaderError(path, "missing or invalid query id", number)
            if not isinstance(text, str) or not text.strip():
                raise ReaderError(path, f"query {qid!r}: missing or empty text", number)
            _add_query(queries, str(qid), text, path, number)
    elif fmt == "tsv":
        with _open_text(path) as f:
            for number, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                qid, sep, text = line.partition("\t")
                if number == 1 and qid.strip().lower() in _QUERY_HEADER_IDS:
                    continue
                if not sep or not qid.strip() or not text.strip():
                    raise ReaderError(path, "expected 'query id<TAB>text'", number)
                _add_query(queries, qid.strip(), text, path, number)
    else:
        raise ReaderError(path, "queries must be JSON lines or a TSV (id<TAB>text)")
    return queries


def _add_query(queries: dict[str, str], qid: str, text: str, path: Path, number: int) -> None:
    if qid in queries:
        raise ReaderError(path, f"duplicate query id {qid!r}", number)
    queries[qid] = text


def read_qrels(path: Path | str) -> dict[str, dict[str, int]]:
    """Query id -> {document id: graded relevance} from a BEIR qrels TSV (``query-id
    corpus-id score``, header row first) or TREC qrels (``qid iter docid rel``).
    A line with a tab is split on tabs only (BEIR TSV: ids may hold spaces), other lines
    on whitespace. A pair listed twice with different grades is an error."""
    path = Path(path)
    if not path.is_file():
        raise ReaderError(path, "no such file")
    qrels: dict[str, dict[str, int]] = {}
    with _open_text(path) as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            cells = [c.strip() for c in line.split("\t")] if "\t" in line else line.split()
            if not any(cells):
                continue
            if len(cells) == 3:
                qid, docid, grade = cells
            elif len(cells) == 4:
                qid, _iteration, docid, grade = cells
            else:
                raise ReaderError(
                    path, f"expected 3 (BEIR) or 4 (TREC) columns, got {len(cells)}", number
                )
            try:
                score = int(grade)
            except ValueError:
                if number == 1:
                    continue  # the BEIR header: query-id corpus-id score
                raise ReaderError(path, f"relevance {grade!r} is not an integer", number) from None
            judged = qrels.setdefault(qid, {})
            if judged.get(docid, score) != score:
                raise ReaderError(
                    path,
                    f"query {qid!r} document {docid!r} judged twice ({judged[docid]} and {score})",
                    number,
                )
            judged[docid] = score
    return qrels

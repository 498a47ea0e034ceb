"""Filter and tombstone masks at 1M documents: the old way (ids fetched in row-id order,
then a Python loop mapping each id to its row through a dict) against the new way
(``CollectionService.mask_bitmap``: ids fetched unordered, mapped by pyarrow's ``is_in``,
cached per collection, version, generation and filter).

The collection is synthetic and needs no index: ``--docs`` rows inserted in bulk into the
database (a SQLite file in a temporary home, or ``--database-url``; metadata ``{"bucket": 0..999, "tag": "t<bucket % 7>"}``), a version whose
rows are the documents in row-id order (as a build writes them), and ``--deleted`` of them
deleted afterwards (the tombstones). Filters on ``bucket`` keep 50%, 5% and 0.5%.

The old way is kept here only (``old_mask``: the code ``OpenVersion.mask_for`` and
``DocumentStore.live_ids`` / ``matching_ids`` ran before this change, verbatim in effect),
so both are timed in one process on one database; every new mask is checked equal to the
old one. Each figure is the best of ``--repeats`` runs.

One table holds every database's rows: a run replaces its own database's rows (and its
note: commit, date, load) in ``benchmarks/results/masks.json`` and keeps the others', so
SQLite and PostgreSQL can be measured in separate runs, on machines with or without a
server.

    python scripts/bench_masks.py            # SQLite, 1M documents
    url=$(.ci/postgres.sh start /tmp/pg)     # a throwaway loopback cluster (its folder 0755)
    python scripts/bench_masks.py --database-url "$url"; .ci/postgres.sh stop /tmp/pg
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_results  # noqa: E402

from specrag.api.service import CollectionService  # noqa: E402
from specrag.retrieval.version import OpenVersion  # noqa: E402
from specrag.settings import Settings  # noqa: E402
from specrag.storage.filters import compile_filter  # noqa: E402
from specrag.storage.models import CollectionRow, DocumentRow  # noqa: E402

NAME = "masks"
COLUMNS = ["database", "mask", "rows kept", "old: SQL ids (ordered) s", "old: Python loop s",
           "old total s", "new: SQL ids s", "new: is_in s", "new first request s",
           "new cached ms", "first request: old / new"]  # fmt: skip
FILTERS = {
    "bucket < 500 (50%)": {"bucket": {"$lt": 500}},
    "bucket < 50 (5%)": {"bucket": {"$lt": 50}},
    "bucket < 5 (0.5%)": {"bucket": {"$lt": 5}},
}


def build_collection(service: CollectionService, n_docs: int, n_deleted: int, seed: int):
    """Insert ``n_docs`` documents in bulk; returns (the version over all of them, the
    collection generation after ``n_deleted`` random deletes)."""
    service.store.create_collection(NAME)
    rng = np.random.default_rng(seed)
    buckets = rng.integers(0, 1000, n_docs)
    with service.engine.begin() as conn:
        cid = conn.scalar(select(CollectionRow.id).where(CollectionRow.name == NAME))
        for start in range(0, n_docs, 50_000):
            conn.execute(
                insert(DocumentRow),
                [
                    {
                        "collection_id": cid,
                        "ext_id": f"doc-{i:07d}",
                        "title": None,
                        "text": "",
                        "metadata": {"bucket": int(buckets[i]), "tag": f"t{buckets[i] % 7}"},
                    }
                    for i in range(start, min(n_docs, start + 50_000))
                ],
            )
        conn.execute(update(CollectionRow).where(CollectionRow.id == cid).values(generation=1))
        ids = np.array(
            list(
                conn.scalars(
                    select(DocumentRow.ext_id)
                    .where(DocumentRow.collection_id == cid)
                    .order_by(DocumentRow.id)
                )
            )
        )
        gone = rng.choice(n_docs, n_deleted, replace=False)
        conn.execute(delete(DocumentRow).where(DocumentRow.ext_id.in_(ids[gone].tolist())))
        conn.execute(update(CollectionRow).where(CollectionRow.id == cid).values(generation=2))
    version = OpenVersion("v-bench", service.settings.home, {"generation": 1}, ids)
    return version, 2


def old_ids(service: CollectionService, filter_) -> list[str]:
    """The old ``live_ids`` / ``matching_ids``: every id, in row-id order."""
    with service.engine.connect() as conn:
        cid = conn.scalar(select(CollectionRow.id).where(CollectionRow.name == NAME))
        query = select(DocumentRow.ext_id).where(DocumentRow.collection_id == cid)
        if filter_ is not None:
            query = query.where(compile_filter(filter_))
        return list(conn.scalars(query.order_by(DocumentRow.id)))


def old_row_index(version: OpenVersion) -> dict[str, int]:
    """The old ``OpenVersion.row_of`` dict, built once per version."""
    return {d: i for i, d in enumerate(version.doc_ids.tolist())}


def old_mask(row_of: dict[str, int], n_docs: int, doc_ids: list[str]) -> np.ndarray:
    """The old ``OpenVersion.mask_for``: one dict lookup per id."""
    mask = np.zeros(n_docs, dtype=bool)
    for d in doc_ids:
        row = row_of.get(d)
        if row is not None:
            mask[row] = True
    return mask


def best(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """(best seconds, the last result)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def database_name(url: str | None) -> str:
    """The table's label of a database URL (None: the SQLite file in the home)."""
    if url is None:
        return "SQLite"
    backend = make_url(url).get_backend_name()
    return {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(backend, backend)


def measure(service: CollectionService, database: str, args) -> tuple[list[list], dict]:
    """Insert the collection, then time every mask the old way and the new: (this
    database's table rows, its run record)."""
    t0 = time.perf_counter()
    version, generation = build_collection(service, args.docs, args.deleted, args.seed)
    insert_s = time.perf_counter() - t0
    n = version.n_docs
    print(f"{database}: {n:,} documents inserted in {insert_s:.1f} s", flush=True)
    dict_s, row_of = best(lambda: old_row_index(version), 1)
    t0 = time.perf_counter()
    version.mask_for([])  # the Arrow ids, once per version
    arrow_s = time.perf_counter() - t0
    rows, cases = [], {}
    for label, filt in {"tombstones (1% deleted)": None, **FILTERS}.items():
        fetch_old, ids = best(lambda f=filt: old_ids(service, f), args.repeats)
        loop_s, reference = best(lambda i=ids: old_mask(row_of, n, i), args.repeats)
        unordered = lambda f=filt: service.store.matching_ids(NAME, f, ordered=False)  # noqa: E731
        fetch_new, ids_new = best(unordered, args.repeats)
        map_s, mask = best(lambda i=ids_new: version.mask_for(i), args.repeats)
        service._masks.clear()  # the first request of this (version, generation, filter)
        first_s, first = best(lambda f=filt: service.mask_bitmap(NAME, version, generation, f), 1)
        cached_s, cached = best(
            lambda f=filt: service.mask_bitmap(NAME, version, generation, f), args.repeats
        )
        if not (np.array_equal(mask, reference) and np.array_equal(first, reference)):
            raise SystemExit(f"{database}, {label}: the new mask differs from the old one")
        if cached is not first:
            raise SystemExit(f"{database}, {label}: the second request missed the cache")
        old_s, new_s = fetch_old + loop_s, first_s
        kept = int(reference.sum())
        rows.append([
            database, label, f"{kept / n:.1%}", round(fetch_old, 3), round(loop_s, 3),
            round(old_s, 3), round(fetch_new, 3), round(map_s, 3), round(new_s, 3),
            round(cached_s * 1e3, 3), f"{old_s / new_s:.1f}x",
        ])  # fmt: skip
        cases[label] = {"kept": kept, "old_fetch_s": fetch_old, "old_loop_s": loop_s,
                        "new_fetch_s": fetch_new, "new_map_s": map_s, "new_first_s": first_s,
                        "new_cached_s": cached_s}  # fmt: skip
        print(rows[-1], flush=True)
    run = {"docs": n, "deleted": args.deleted, "repeats": args.repeats, "insert_s": insert_s,
           "old_dict_s": dict_s, "new_arrow_ids_s": arrow_s, "cases": cases}  # fmt: skip
    return rows, run


def earlier_runs(database: str) -> tuple[list[list], dict[str, dict]]:
    """The other databases' rows and runs in the result file (this one's are replaced)."""
    path = bench_results.RESULTS / f"{NAME}.json"
    if not path.exists():
        return [], {}
    result = json.loads(path.read_text())
    rows = [row for row in result["tables"][0]["rows"] if row[0] != database]
    runs = {db: run for db, run in result["data"]["runs"].items() if db != database}
    return rows, runs


def run_note(database: str, run: dict) -> str:
    """Where one database's rows come from: its command, commit, date and load."""
    before, after = run["load_before"][0], run["load_after"][0]
    return (
        f"{database}: `{run['command']}` at commit {run['commit']}, {run['date']}; "
        f"{run['docs']:,} documents inserted in {run['insert_s']:.0f} s, the old dict built "
        f"in {run['old_dict_s']:.2f} s, the Arrow ids in {run['new_arrow_ids_s']:.2f} s; "
        f"best of {run['repeats']}. Load average (1 min) {before:.1f} before and "
        f"{after:.1f} after the run, on {run['cores']} cores shared with other work."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--deleted", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--database-url",
        default=None,
        help="an empty database to fill (e.g. PostgreSQL); default: SQLite in a temp home",
    )
    args = parser.parse_args()
    database = database_name(args.database_url)
    command = "python scripts/bench_masks.py" + (
        f" --database-url <{database} URL>" if args.database_url else ""
    )
    if args.docs != 1_000_000:
        command += f" --docs {args.docs}"
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-masks-") as home:
        service = CollectionService(Settings(home=Path(home), database_url=args.database_url))
        try:
            rows, run = measure(service, database, args)
        finally:
            service.close()
    run.update(
        command=command, commit=bench_results.commit(), date=time.strftime("%Y-%m-%d"),
        load_before=load_before, load_after=os.getloadavg(), cores=os.cpu_count(),
    )  # fmt: skip
    other_rows, runs = earlier_runs(database)
    runs[database] = run
    databases = sorted(runs, key=lambda db: (db != "SQLite", db))  # SQLite first
    rows = sorted(other_rows + rows, key=lambda row: databases.index(row[0]))
    sizes = sorted({r["docs"] for r in runs.values()})
    bench_results.write_result(
        NAME,
        f"Masks at {' and '.join(f'{n:,}' for n in sizes)} documents: filters and "
        "tombstones, old way vs new, SQLite and PostgreSQL",
        [
            bench_results.table(
                " and ".join(databases) + ": seconds, best of each run's repeats", COLUMNS, rows
            )
        ],
        notes=[
            "A mask is the rows of an index version a search may return. The old way fetched "
            "every matching id in row-id order and looped over them in Python with a dict "
            "lookup each (the dict built once per version); the new way fetches them "
            "unordered and maps them with pyarrow's hash-based `is_in` over the version's ids "
            "(an Arrow array built once per version), and caches the mask per (collection, "
            "version, generation, filter), so a repeated filter costs a lookup until the next "
            "write. The SQL part, the database evaluating the JSON filter on every row, is the "
            "floor of a first request; only the cache goes below it. The old way is kept in "
            "the script (`old_ids`, `old_mask`); every new mask is checked equal to the old "
            "one.",
            "An unfiltered search on a version built from the collection's current "
            "generation builds no tombstone mask at all (nothing was deleted since).",
            *(run_note(db, runs[db]) for db in databases),
        ],
        command="python scripts/bench_masks.py [--database-url URL]  # one run per database",
        order=34,
        data={"runs": runs},
    )


if __name__ == "__main__":
    main()

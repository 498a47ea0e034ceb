"""Past one machine, measured on SciFact (issue #16): build throughput local vs Ray, sharded
vs unsharded search, and the cost model checked against both. Two parts, run separately
(each keeps the other's figures) into ``benchmarks/results/scale_scifact.json``:

``build``: bm25 + dense (MiniLM) over the first ``--docs`` SciFact documents, local build
vs Ray Data with 1 and 2 encoder actors, back to back, each in a fresh process and a fresh
collection folder (every document encoded; ``scale_build_run.py``), with the load average
around each run. Threads: local torch on every core; Ray ``cores / actors`` torch threads
per actor (actors x threads = cores).

``search``: all 5,183 documents, the 300 test queries, one collection under
``.cache/scale/scifact`` (git-ignored) whose encoding store persists, so MiniLM encodes
SciFact once across runs and versions: the unsharded version, then S = 1, 2, 4 shards
(local processes), which must encode nothing. Per kind (bm25, dense flat):

- identical top-k: every sharded top-10 and top-100 against the unsharded one (bm25 ids and
  scores exactly, dense ids and scores within 1e-5); the count of differing queries must be 0;
- latency (one query per call, p50 / p99) and QPS (all queries in one call), through the
  searchers the pipeline calls; shards in threads on this machine's cores;
- the parts of a scatter-gather: each shard searched alone per query (the slowest shard's
  time is what a cluster with a core per shard waits for), the merge, and the query encoding
  (dense: once per query, not per shard), plus a 64-document index (a search's fixed cost);
- bytes per passage of each kind's files.

The cost model (``scale_cost_model.py``) is computed from whatever figures the result holds.

Run: python scripts/bench_scale.py build [--docs 5000] [--modes local,ray-1,ray-2]
     python scripts/bench_scale.py search [--shards 1,2,4] [--repeat 2]
"""

from __future__ import annotations

import os

import bench_env

bench_env.offline_with_threads(1)  # single-thread kernels: shards are the parallelism

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_results  # noqa: E402
import scale_cost_model  # noqa: E402
from scifact_cache import DEFAULT_DATA, load_scifact  # noqa: E402

NAME = "scale_scifact"
CACHE = bench_results.REPO / ".cache" / "scale"
KINDS = {"bm25": {}, "dense": {"index": "flat"}}
TINY_DOCS = 64
COMMANDS = {
    "build": "python scripts/bench_scale.py build --docs 5000",
    "search": "python scripts/bench_scale.py search --shards 1,2,4 --repeat 2",
}


# -- the result file ----------------------------------------------------------------------


def load_data(results_dir: Path) -> dict:
    path = results_dir / f"{NAME}.json"
    return json.loads(path.read_text())["data"] if path.exists() else {}


def save(data: dict, results_dir: Path) -> None:
    tables, notes = scale_cost_model.tables_and_notes(data)
    bench_results.write_result(
        NAME,
        "Past one machine: Ray builds, sharded search and a cost model (SciFact)",
        tables,
        notes=notes,
        command=" && ".join(
            data[p].get("command", COMMANDS[p]) for p in ("build", "search") if p in data
        ),
        order=35,
        data=data,
        out_dir=results_dir,
    )


# -- build throughput ---------------------------------------------------------------------


def run_builds(args) -> list[dict]:
    """Every mode back to back, each in a process of its own."""
    runs = []
    for mode in args.modes.split(","):
        cmd = [sys.executable, str(Path(__file__).with_name("scale_build_run.py")), mode]
        cmd += ["--docs", str(args.docs), "--corpus", str(args.data / "corpus.jsonl")]
        print(f"{mode}: load {os.getloadavg()[0]:.1f}", flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        (line,) = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        runs.append(json.loads(line.removeprefix("RESULT ")))
        print(runs[-1], flush=True)
    return runs


def cmd_build(args) -> None:
    if args.runs_file:  # runs already made by scale_build_run.py, one JSON line each
        runs = [json.loads(ln) for ln in args.runs_file.read_text().splitlines() if ln.strip()]
    else:
        runs = run_builds(args)
    for run in runs:
        if run["encoded"] != run["docs"]:
            sys.exit(f"{run['mode']} encoded {run['encoded']} of {run['docs']} documents")
    data = load_data(args.results_dir)
    data["build"] = {"runs": runs}
    if args.runs_file:
        data["build"]["command"] = args.runs_command or f"python {' '.join(sys.argv)}"
    save(data, args.results_dir)


# -- search -------------------------------------------------------------------------------


def percentiles(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t0) * 1000


def mismatches(kind: str, got, want) -> int:
    """Queries whose top-k differs: ids in order, and scores (bm25 exactly, dense 1e-5)."""
    bad = 0
    for g, w in zip(got, want, strict=True):
        gs, ws = [h.score for h in g], [h.score for h in w]
        same = [h.doc_id for h in g] == [h.doc_id for h in w] and (
            gs == ws if kind == "bm25" else np.allclose(gs, ws, atol=1e-5, rtol=0)
        )
        bad += not same
    return bad


def end_to_end(searcher, queries: list[str], k: int, repeat: int) -> dict:
    """One query per call (p50 / p99) and all queries in one call (QPS)."""
    searcher.search(queries[:8], k)  # warm: numba, model, scratch buffers, thread pool
    ms = [timed(searcher.search, [q], k) for _ in range(repeat) for q in queries]
    t0 = time.perf_counter()
    for _ in range(repeat):
        searcher.search(queries, k)
    p50, p99 = percentiles(ms)
    return {"p50_ms": p50, "p99_ms": p99, "qps": repeat * len(queries) / (time.perf_counter() - t0)}


def scatter_parts(version, kind: str, queries: list[str], k: int, repeat: int) -> dict:
    """Per query: each shard alone (the slowest one's time), the merge of their lists, and
    the query encoding (dense). An unsharded version counts as one shard."""
    searcher = version.searchers[kind]
    shards = [s for s, _rows in getattr(searcher, "shards", [(searcher, None)]) if s]
    dense = kind == "dense"
    encode_ms, slowest, merge_ms = [], [], []
    for _ in range(repeat):
        for q in queries:
            if dense:
                t0 = time.perf_counter()
                emb = shards[0].encode([q])
                encode_ms.append((time.perf_counter() - t0) * 1000)
            lists, times = [], []
            for shard in shards:
                kk = min(k, len(shard.doc_ids))
                t0 = time.perf_counter()
                hits = shard.search_embeddings(emb, kk) if dense else shard.search([q], kk)
                times.append((time.perf_counter() - t0) * 1000)
                lists.append(hits[0])
            slowest.append(max(times))
            if hasattr(searcher, "_merge"):
                merge_ms.append(timed(searcher._merge, lists, k))
    out = {"slowest_shard_p50_ms": percentiles(slowest)[0]}
    out["merge_p50_ms"] = percentiles(merge_ms)[0] if merge_ms else 0.0
    if dense:
        out["encode_p50_ms"] = percentiles(encode_ms)[0]
    return out


def kind_bytes(folder: Path, kinds) -> dict[str, int]:
    """Bytes of each kind's files under a version folder (its shards' folders included)."""
    sizes = dict.fromkeys(kinds, 0)
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        kind = next((p for p in parts if p in sizes), None)
        if kind and path.is_file():
            sizes[kind] += path.stat().st_size
    return sizes


def cmd_search(args) -> None:
    from specrag.indexing.shards.build import build_sharded
    from specrag.indexing.versions import VersionStore
    from specrag.retrieval.version import open_version

    scifact = load_scifact(args.data)
    docs, queries = scifact.docs, scifact.query_texts
    store = VersionStore(CACHE / "scifact")  # its encodings/ persists between runs
    shutil.rmtree(store.versions_dir, ignore_errors=True)
    (store.root / "CURRENT").unlink(missing_ok=True)
    builds = []

    def build(name: str, fn, *a, **kw) -> str:
        t0 = time.perf_counter()
        vid = fn(*a, activate=False, **kw)
        seconds = time.perf_counter() - t0
        encodings = store.manifest(vid).get("encodings", {})
        encoded = sum(e["encoded"] for e in encodings.values())
        builds.append({"layout": name, "build_s": round(seconds, 2), "encoded": encoded,
                       "load": round(os.getloadavg()[0], 2)})  # fmt: skip
        print(builds[-1], flush=True)
        return vid

    import torch

    torch.set_num_threads(os.cpu_count() or 1)  # encode SciFact (once) on every core
    layouts = {"unsharded": build("unsharded", store.build, docs, KINDS)}
    for n in args.shards:
        layouts[f"S={n}"] = build(
            f"S={n}", build_sharded, store, docs, KINDS, n, runner="processes"
        )
    tiny = build(f"{TINY_DOCS} docs", store.build, docs[:TINY_DOCS], KINDS)
    encoded_after_first = sum(b["encoded"] for b in builds[1:])
    torch.set_num_threads(1)  # searches: one thread per shard (OMP and MKL likewise)
    versions = {name: open_version(store, vid) for name, vid in layouts.items()}
    plain = versions["unsharded"]

    rows, checks = [], {}
    for kind in KINDS:
        for k in (10, 100):
            want = plain.searchers[kind].search(queries, k)
            for name, version in versions.items():
                got = version.searchers[kind].search(queries, k)
                checks[f"{kind}/{name}/top{k}"] = mismatches(kind, got, want)
    tiny_version = open_version(store, tiny)
    for kind in KINDS:
        for name, version in [*versions.items(), (f"{TINY_DOCS} docs", tiny_version)]:
            figures = end_to_end(version.searchers[kind], queries, args.k, args.repeat)
            figures |= scatter_parts(version, kind, queries, args.k, args.repeat)
            n_shards = version.manifest.get("shards", {}).get("count", 1)
            rows.append({"kind": kind, "layout": name, "shards": n_shards,
                         "n_docs": version.manifest["n_docs"], **figures,
                         "load": round(os.getloadavg()[0], 2)})  # fmt: skip
            print(rows[-1], flush=True)
    sizes = {name: kind_bytes(store.path(vid), KINDS) for name, vid in layouts.items()}
    data = load_data(args.results_dir)
    data["search"] = {
        "n_docs": len(docs),
        "n_queries": len(queries),
        "k": args.k,
        "repeat": args.repeat,
        "builds": builds,
        "encoded_after_first_build": encoded_after_first,
        "mismatches": checks,
        "latency": rows,
        "bytes": sizes,
        "bm25_terms": open_version(store, layouts[f"S={args.shards[-1]}"]).manifest["shards"][
            "bm25"
        ]["n_terms"],
    }
    save(data, args.results_dir)
    if any(checks.values()) or encoded_after_first:
        sys.exit(f"mismatches {checks}; encoded after the first build: {encoded_after_first}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    b = sub.add_parser("build", help="build throughput: local vs Ray (1 and 2 actors)")
    b.add_argument("--docs", type=int, default=5000)
    b.add_argument("--modes", default="local,ray-1,ray-2")
    b.add_argument("--runs-file", type=Path, help="JSON lines of runs already made")
    b.add_argument("--runs-command", help="the commands that made them (for the result)")
    s = sub.add_parser("search", help="sharded vs unsharded search")
    s.add_argument("--shards", default="1,2,4", type=lambda v: [int(x) for x in v.split(",")])
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--repeat", type=int, default=2, help="passes over the queries")
    for p in (b, s):
        p.add_argument("--data", type=Path, default=DEFAULT_DATA)
        p.add_argument("--results-dir", type=Path, default=bench_results.RESULTS)
    args = parser.parse_args()
    {"build": cmd_build, "search": cmd_search}[args.part](args)


if __name__ == "__main__":
    main()

"""The ``specrag`` command line: index, search, eval, serve, collections, demo, ask.

Every command works on the same CollectionService as the REST API (settings from
``SPECRAG_*`` environment variables, home ``.specrag`` by default). User errors (a bad
corpus line, an unknown collection, a bad filter) print one ``error: ...`` line and exit
with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from specrag.settings import Settings

DEMO_COLLECTION = "demo"
DEMO_CORPUS = Path("demo") / "scifact-1k.jsonl"
#: The offline default pipeline: hybrid (bm25 + dense) first stage, MaxSim rerank over the
#: colbert kind's token store (MiniLM token embeddings, int8).
DEMO_KINDS = ["bm25", "dense", "colbert"]
EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the command's input, reported without a traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `ask` imports the generation stack (torch): only when it is the command.
    parser = build_parser(with_ask=bool(argv) and argv[0] == "ask")
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UserError, ValueError, LookupError, ValidationError, OSError) as exc:
        print(f"error: {_message(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR


def build_parser(with_ask: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="specrag", description="specrag: retrieval and RAG search.")
    sub = parser.add_subparsers(dest="command", required=True)

    if with_ask:
        from specrag.api.ask import add_ask_arguments, ask_cli

        p = sub.add_parser("ask", help="answer a question from a collection's hits")
        add_ask_arguments(p)
        p.set_defaults(handler=ask_cli)
    else:
        sub.add_parser("ask", help="answer a question from a collection's hits (see: specrag ask -h)")

    p = sub.add_parser("index", help="create/update a collection from a corpus file and build it")
    p.add_argument("--collection", required=True)
    p.add_argument("--corpus", required=True, type=Path, help="a corpus file or a BEIR directory")
    p.add_argument(
        "--kinds",
        default=None,
        help="comma-separated index kinds, e.g. bm25,dense; or a JSON object of kinds and "
        'their configs, as in the REST API: \'{"splade": {"model": "naver/splade-v3"}}\'',
    )
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail")
    p.set_defaults(handler=cmd_index)

    p = sub.add_parser("search", help="search a collection")
    p.add_argument("--collection", required=True)
    p.add_argument("--query", required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--retriever", default="hybrid", help="an index kind or hybrid")
    p.add_argument("--filter", default=None, help="Mongo-like metadata filter as JSON")
    p.add_argument("--json", action="store_true", help="print the SearchResponse as JSON")
    p.set_defaults(handler=cmd_search)

    p = sub.add_parser("eval", help="evaluate a retriever on queries + qrels (ir-measures)")
    p.add_argument("--collection", required=True)
    p.add_argument("--queries", required=True, type=Path)
    p.add_argument("--qrels", required=True, type=Path)
    p.add_argument("--retriever", default="hybrid")
    p.add_argument("--run-out", required=True, type=Path, help="TREC run file to write (top 1000)")
    p.add_argument("--depth", type=int, default=1000, help="hits per query in the run")
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser("calibrate", help="fit score -> probability of relevance (for min_relevance)")
    p.add_argument("--collection", required=True)
    p.add_argument("--queries", required=True, type=Path, help="training queries")
    p.add_argument("--qrels", required=True, type=Path, help="training judgments")
    p.add_argument("--retriever", default="hybrid")
    p.add_argument("--rerank", choices=["maxsim", "cross-encoder"], default=None)
    p.add_argument("--rerank-model", default=None)
    p.set_defaults(handler=cmd_calibrate)

    p = sub.add_parser("serve", help="run the REST API (uvicorn)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("collections", help="list collections")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_collections)

    p = sub.add_parser("demo", help="build the demo collection (once) and serve it")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--corpus", type=Path, default=None, help=f"default: {DEMO_CORPUS}")
    p.set_defaults(handler=cmd_demo)
    return parser


def _service():
    from specrag.api.service import CollectionService

    return CollectionService(Settings())


def _kinds(raw: str | None) -> list[str] | dict[str, dict | None] | None:
    """``--kinds``: names (default configs) or, for kinds that need settings such as a
    SPLADE model, a JSON object of kinds and configs (validated by the service)."""
    if raw is None:
        return None
    if raw.lstrip().startswith("{"):
        try:
            kinds = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise UserError(f"--kinds is not valid JSON: {exc}") from None
        if not isinstance(kinds, dict) or not all(
            v is None or isinstance(v, dict) for v in kinds.values()
        ):
            raise UserError('--kinds JSON must map kind names to config objects, e.g. {"bm25": {}}')
        return kinds
    kinds = [k.strip() for k in raw.split(",") if k.strip()]
    if not kinds:
        raise UserError("--kinds names no index kind")
    return kinds


def _documents(path: Path, on_error: str):
    """Read the corpus once to validate it (so a bad line changes nothing in the store),
    then return a re-readable stream for the upsert."""
    from specrag.indexing.readers import read_documents

    if not path.exists():
        raise UserError(f"corpus not found: {path}")
    stats: dict = {}
    n = sum(1 for _ in read_documents(path, on_error=on_error, stats=stats))
    if n == 0:
        raise UserError(f"no documents in {path}")
    skipped = stats.get("skipped", 0)
    if skipped:
        print(f"skipped {skipped} bad record(s) in {path}", file=sys.stderr)
    return n, read_documents(path, on_error=on_error)


def cmd_index(args) -> int:
    kinds = _kinds(args.kinds)
    n, docs = _documents(args.corpus, args.on_error)
    service = _service()
    try:
        started = time.perf_counter()
        version = service.index(args.collection, docs, kinds, progress_bar=True)
        seconds = time.perf_counter() - started
        info = service.get_collection(args.collection)
    finally:
        service.close()
    print(
        f"indexed {n} documents into {args.collection!r}: version {version} "
        f"({', '.join(info.kinds)}) in {seconds:.1f} s"
    )
    return 0


def cmd_search(args) -> int:
    from specrag.retrieval.request import SearchRequest

    filter_ = _json_arg(args.filter, "--filter") if args.filter else None
    include = ["title", "scores"]
    request = SearchRequest(
        query=args.query, k=args.k, retriever=args.retriever, filter=filter_, include=include
    )
    service = _service()
    try:
        response = service.search(args.collection, request)
    finally:
        service.close()
    if args.json:
        print(response.model_dump_json(indent=2))
        return 0
    for rank, hit in enumerate(response.hits, start=1):
        title = (hit.title or "").replace("\n", " ")[:80]
        print(f"{rank:>3}  {hit.doc_id:<16} {hit.score:10.4f}  {title}")
    if not response.hits:
        print("no hits")
    return 0


def cmd_eval(args) -> int:
    from specrag.indexing.readers import read_qrels, read_queries
    from specrag.retrieval import pipeline
    from specrag.retrieval.evaluation import evaluate, judged_queries, write_trec_run
    from specrag.retrieval.request import SearchRequest

    qrels = read_qrels(args.qrels)
    queries, skipped = judged_queries(read_queries(args.queries), qrels)
    if not queries:
        raise UserError(f"none of the queries in {args.queries} has judgments in {args.qrels}")
    service = _service()
    try:
        service.check_limits(SearchRequest(query="x", k=args.depth))
        info = service.store.get_collection(args.collection)
        version = service.version_for(args.collection)
        allowed = service.live_mask(args.collection, version, info.generation)
        request = SearchRequest(query="x", k=args.depth, retriever=args.retriever)
        qids = list(queries)
        started = time.perf_counter()
        outcome = pipeline.search_batch(version, [queries[q] for q in qids], request, allowed, service.hooks)
        seconds = time.perf_counter() - started
    finally:
        service.close()
    run = dict(zip(qids, outcome.hits, strict=True))
    write_trec_run(args.run_out, run, tag=f"specrag-{args.retriever}", depth=args.depth)
    scores = evaluate(run, qrels)
    print(f"evaluated {len(qids)} queries ({skipped} without judgments skipped) "
          f"with {args.retriever} on {args.collection!r} version {version.id} in {seconds:.1f} s")
    for name, value in scores.items():
        print(f"{name:<8} {value:.4f}")
    print(f"run written to {args.run_out}")
    return 0


def cmd_calibrate(args) -> int:
    """Run the request the calibration is for over training queries (depth 100) and fit
    the calibrator that `min_relevance` reads, stored in the current version."""
    from specrag.api.stages import CALIBRATION_NAME
    from specrag.indexing.readers import read_qrels, read_queries
    from specrag.retrieval import pipeline
    from specrag.retrieval.calibration import calibration_path, fit_calibration
    from specrag.retrieval.evaluation import judged_queries
    from specrag.retrieval.request import RerankSpec, SearchRequest

    qrels = read_qrels(args.qrels)
    queries, skipped = judged_queries(read_queries(args.queries), qrels)
    if not queries:
        raise UserError(f"none of the queries in {args.queries} has judgments in {args.qrels}")
    request = SearchRequest(query="x", k=100, retriever=args.retriever)
    if args.rerank:  # else the retriever's default pipeline, as a search request gets it
        rerank = RerankSpec(method=args.rerank, model=args.rerank_model)
        request = request.model_copy(update={"rerank": rerank})
    service = _service()
    try:
        info = service.store.get_collection(args.collection)
        version = service.version_for(args.collection)
        allowed = service.live_mask(args.collection, version, info.generation)
        qids = list(queries)
        outcome = pipeline.search_batch(version, [queries[q] for q in qids], request, allowed, service.hooks)
    finally:
        service.close()
    run = {q: [(h.doc_id, h.score) for h in hits] for q, hits in zip(qids, outcome.hits, strict=True)}
    calibrator = fit_calibration(run, qrels, top_n=100)
    path = calibration_path(version.path, CALIBRATION_NAME)
    calibrator.save(path)
    print(f"calibrated {args.retriever}{' + ' + args.rerank if args.rerank else ''} on {len(qids)} "
          f"queries ({skipped} without judgments skipped); written to {path}")
    print("search requests with the same retriever/rerank settings can now use min_relevance")
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    from specrag.api.app import create_app

    uvicorn.run(create_app(Settings()), host=args.host, port=args.port)
    return 0


def cmd_collections(args) -> int:
    service = _service()
    try:
        collections = service.list_collections()
    finally:
        service.close()
    if args.json:
        print(json.dumps([c.model_dump(mode="json") for c in collections], indent=2))
        return 0
    if not collections:
        print("no collections")
    for c in collections:
        print(f"{c.name:<24} {c.n_documents:>9} docs  kinds={','.join(c.kinds)}  "
              f"version={c.current_version or '-'}")
    return 0


def cmd_demo(args) -> int:
    corpus = args.corpus or _demo_corpus()
    service = _service()
    try:
        if not _demo_version_opens(service):
            print(f"building the {DEMO_COLLECTION!r} collection from {corpus} "
                  f"({', '.join(DEMO_KINDS)}) ...")
            _n, docs = _documents(corpus, "fail")
            service.index(DEMO_COLLECTION, docs, DEMO_KINDS, progress_bar=True)
    finally:
        service.close()
    print(f"serving on http://{args.host}:{args.port}  (try: specrag search --collection demo "
          f"--query 'stem cells')")
    return cmd_serve(args)


def _demo_version_opens(service) -> bool:
    """Whether the demo collection has a current version this code can read (one built
    by an older specrag, in an older index format, is rebuilt rather than served broken)."""
    from specrag.indexing.impact_index import IndexFormatError
    from specrag.retrieval.version import open_version

    store = service.versions(DEMO_COLLECTION)
    if store.current() is None:
        return False
    try:
        open_version(store)
    except IndexFormatError as exc:
        print(f"the {DEMO_COLLECTION!r} collection cannot be read ({exc}): rebuilding it")
        return False
    return True


def _demo_corpus() -> Path:
    """demo/scifact-1k.jsonl from the working directory, else from the source checkout."""
    if DEMO_CORPUS.exists():
        return DEMO_CORPUS
    repo_copy = Path(__file__).resolve().parent.parent / DEMO_CORPUS
    if repo_copy.exists():
        return repo_copy
    raise UserError(f"demo corpus not found: {DEMO_CORPUS}")


def _json_arg(raw: str, flag: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UserError(f"{flag} is not valid JSON: {exc}") from None


def _message(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
    if isinstance(exc, LookupError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]  # KeyError's str() adds quotes
    return str(exc) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())

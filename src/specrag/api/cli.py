"""The ``specrag`` command line: index, search, eval, calibrate, ask, serve, collections, demo.

Every command works on the same CollectionService as the REST API (settings from
``SPECRAG_*`` environment variables; the home folder is printed on stderr). Commands parse
their files and print; the work is the service's. User errors (a bad corpus line, an
unknown collection, a bad filter: ``specrag.errors.UserError``, a pydantic validation error,
an OS error such as a missing file) print one ``error: ...`` line and exit with status 2;
anything else is a defect and prints its traceback (exit 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from specrag.api import keys_cli
from specrag.errors import UserError as BaseUserError
from specrag.settings import Settings

DEMO_COLLECTION = "demo"
#: Shipped in the package (src/specrag/demo/), so an installed wheel has it too.
DEMO_CORPUS = Path(__file__).resolve().parent.parent / "demo" / "scifact-1k.jsonl"
#: The offline default pipeline: hybrid (bm25 + dense) first stage, MaxSim rerank over the
#: colbert kind's token store (MiniLM token embeddings, int8).
DEMO_KINDS = ["bm25", "dense", "colbert"]
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_UNAVAILABLE = 3


class UserError(BaseUserError):
    """A problem with the command's input, reported without a traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BaseUserError, ValidationError, OSError) as exc:
        print(f"error: {_message(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 - a defect: show where it happened
        traceback.print_exc()
        print(
            f"error: internal error ({type(exc).__name__}: {exc}); the traceback above says "
            "where: please report it",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specrag",
        description="specrag: retrieval and RAG search. Data lives in SPECRAG_HOME "
        f"(now: {Settings().home}).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="create or update a collection from a corpus and build it")
    _collection(p)
    p.add_argument(
        "--corpus", required=True, type=Path,
        help="a corpus file (.jsonl[.gz], .csv, .tsv, .parquet) or a BEIR directory",
    )  # fmt: skip
    p.add_argument(
        "--kinds",
        default=None,
        help="index kinds to add, comma-separated (e.g. bm25,dense), or a JSON object of kinds "
        'and configs as in the REST API: \'{"splade": {"model": "naver/splade-v3"}}\'. '
        "Default: the collection's kinds (bm25 for a new collection). A build writes all of "
        "the collection's kinds.",
    )
    p.add_argument(
        "--on-error", choices=["fail", "skip"], default="fail",
        help="a bad corpus record stops the run (fail, the default) or is skipped and counted",
    )  # fmt: skip
    p.add_argument(
        "--full", action="store_true",
        help="retrain every kind's trained parts (e.g. the colbert codebook), ignoring the "
        "previous version; still reuses encodings",
    )  # fmt: skip
    _scale_options(p)
    p.set_defaults(handler=cmd_index)

    p = sub.add_parser("search", help="search a collection")
    _collection(p)
    p.add_argument("--query", required=True, help="the query text")
    _search_options(p, k_help="hits to return")
    p.add_argument("--json", action="store_true", help="print the SearchResponse as JSON")
    p.set_defaults(handler=cmd_search)

    p = sub.add_parser("eval", help="evaluate a retriever on queries and qrels (ir-measures)")
    _collection(p)
    _judged_files(p)
    p.add_argument("--retriever", default="hybrid", help="an index kind, or hybrid (default)")
    p.add_argument("--run-out", required=True, type=Path, help="TREC run file to write")
    p.add_argument("--depth", type=int, default=1000, help="hits per query in the run (1000)")
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser(
        "calibrate", help="fit score -> probability of relevance (enables min_relevance)"
    )
    _collection(p)
    _judged_files(p, what="training")
    p.add_argument("--retriever", default="hybrid", help="an index kind, or hybrid (default)")
    p.add_argument(
        "--rerank", choices=["maxsim", "cross-encoder"], default=None,
        help="the rerank of the searches to calibrate (default: the retriever's default pipeline)",
    )  # fmt: skip
    p.add_argument("--rerank-model", default=None, help="the reranker's model name or path")
    p.add_argument(
        "--fusion", choices=["rrf", "convex", "calibrated"], default=None,
        help="the fusion of the searches to calibrate (default: the retriever's)",
    )  # fmt: skip
    p.add_argument(
        "--prf", default=None, metavar="JSON",
        help='bm25 RM3 feedback of the searches, e.g. \'{"fb_docs": 10, "fb_terms": 10, '
        '"orig_weight": 0.5}\' (a search with the same prf reads this calibration)',
    )  # fmt: skip
    p.add_argument(
        "--depth",
        type=int,
        default=100,
        help="hits per query fitted on (100); searches may ask k up to it",
    )
    p.set_defaults(handler=cmd_calibrate)

    p = sub.add_parser("ask", help="answer a question from a collection's hits")
    _collection(p)
    p.add_argument("--question", required=True, help="the question (also the query)")
    _search_options(p, k_help="passages put into the prompt", k_default=5)
    p.add_argument("--model", default=None, help="generator; default SPECRAG_GENERATOR")
    p.add_argument("--draft-model", default=None, help="draft model; default SPECRAG_DRAFT_MODEL")
    p.add_argument("--max-new-tokens", type=int, default=256, help="answer length cap (256)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy")
    p.add_argument("--seed", type=int, default=None, help="sampling seed")
    p.add_argument("--no-speculative", action="store_true", help="plain decoding")
    p.add_argument(
        "--drafters", default="context,datastore",
        help="comma-separated drafters: context, datastore, draft-model",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the AskResponse as JSON")
    p.set_defaults(handler=cmd_ask)

    p = sub.add_parser("serve", help="run the REST API (uvicorn)")
    _address(p)
    p.add_argument(
        "--ray", nargs="?", const="", default=None, metavar="ADDRESS",
        help="serve as a Ray Serve deployment (extra `ray`; docs/scaling.md) on the cluster at "
        "ADDRESS (none: RAY_ADDRESS or a new local one)",
    )  # fmt: skip
    p.add_argument("--replicas", type=int, default=1, help="Serve replicas with --ray (1)")
    p.set_defaults(handler=cmd_serve)

    keys_cli.add_parser(sub)

    p = sub.add_parser(
        "refresh", help="make a collection's pending writes searchable now (a delta segment)"
    )
    p.add_argument("name", help="the collection's name")
    p.set_defaults(handler=cmd_refresh)

    p = sub.add_parser(
        "merge", help="merge a collection's delta into a new version (from the encoding store)"
    )
    p.add_argument("name", help="the collection's name")
    p.set_defaults(handler=cmd_merge)

    p = sub.add_parser("collections", help="list collections")
    p.add_argument("--json", action="store_true", help="print them as JSON")
    p.set_defaults(handler=cmd_collections)

    p = sub.add_parser("demo", help="build the demo collection (once) and serve it")
    _address(p)
    p.add_argument(
        "--corpus", type=Path, default=None, help="the demo corpus (default: the packaged one)"
    )
    p.set_defaults(handler=cmd_demo)
    return parser


def _collection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", required=True, help="the collection's name")


def _judged_files(p: argparse.ArgumentParser, what: str = "test") -> None:
    p.add_argument(
        "--queries", required=True, type=Path,
        help=f"{what} queries: JSONL (_id, text), TSV (id, text) or a BEIR queries.jsonl",
    )  # fmt: skip
    p.add_argument(
        "--qrels", required=True, type=Path,
        help=f"{what} judgments: TREC qrels or a BEIR qrels .tsv",
    )  # fmt: skip


def _search_options(p: argparse.ArgumentParser, k_help: str, k_default: int = 10) -> None:
    p.add_argument("--k", type=int, default=k_default, help=f"{k_help} ({k_default})")
    p.add_argument("--retriever", default="hybrid", help="an index kind, or hybrid (default)")
    p.add_argument(
        "--filter", default=None, help="Mongo-like metadata filter as JSON, e.g. '{\"year\": 2020}'"
    )


def _scale_options(p: argparse.ArgumentParser) -> None:
    """--shards and --ray (docs/scaling.md)."""
    p.add_argument(
        "--shards", type=int, default=None,
        help="split the collection into S shards (bm25, dense), built in parallel and searched "
        "together; kept for later builds. Default: the collection's count (1 for a new one)",
    )  # fmt: skip
    p.add_argument(
        "--ray", nargs="?", const="", default=None, metavar="ADDRESS",
        help="build on Ray (extra `ray`): the dense encoder on a Ray Data actor pool, shards as "
        "Ray tasks. ADDRESS: a cluster (auto, host:6379, ray://host:10001); none: the "
        "RAY_ADDRESS cluster or a new local one",
    )  # fmt: skip


def _scale(args, settings) -> dict:
    from specrag.indexing.scaleout import RayOptions

    ray = None
    if args.ray is not None:
        ray = RayOptions.from_settings(settings, address=args.ray or None)
    return {"shards": args.shards, "ray": ray}


def _address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (8000)")


def _service():
    from specrag.api.service import CollectionService

    settings = Settings()
    print(f"specrag home: {settings.home}", file=sys.stderr)
    return CollectionService(settings)


def _kinds(raw: str | None) -> list[str] | dict[str, dict | None] | None:
    """``--kinds``: names (default configs) or a JSON object of kinds and configs
    (validated by the service)."""
    if raw is None:
        return None
    if raw.lstrip().startswith("{"):
        kinds = _json_arg(raw, "--kinds")
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
    from specrag.indexing.readers import ReaderError, read_documents

    if not path.exists():
        raise UserError(f"corpus not found: {path}")
    stats: dict = {}
    try:
        n = sum(1 for _ in read_documents(path, on_error=on_error, stats=stats))
    except ReaderError as exc:
        if exc.line is None or on_error == "skip":
            raise
        raise UserError(f"{exc} (--on-error skip skips bad records)") from exc
    if n == 0:
        raise UserError(f"no documents in {path}")
    skipped = stats.get("skipped", 0)
    if skipped:
        print(f"skipped {skipped} bad record(s) in {path} (--on-error skip):", file=sys.stderr)
        for message in stats.get("errors", [])[:5]:
            print(f"  {message}", file=sys.stderr)
    return n, read_documents(path, on_error=on_error)


def _judged(args) -> tuple[dict[str, str], dict[str, dict[str, int]], int]:
    from specrag.indexing.readers import read_qrels, read_queries
    from specrag.retrieval.evaluation import judged_queries

    qrels = read_qrels(args.qrels)
    queries, skipped = judged_queries(read_queries(args.queries), qrels)
    if not queries:
        raise UserError(f"none of the queries in {args.queries} has judgments in {args.qrels}")
    return queries, qrels, skipped


def cmd_index(args) -> int:
    kinds = _kinds(args.kinds)
    n, docs = _documents(args.corpus, args.on_error)
    service = _service()
    try:
        started = time.perf_counter()
        version = service.index(
            args.collection,
            docs,
            kinds,
            progress_bar=True,
            full=args.full,
            **_scale(args, service.settings),
        )
        seconds = time.perf_counter() - started
        info = service.get_collection(args.collection)
        encoded = service.versions(args.collection).manifest(version).get("encodings")
    finally:
        service.close()
    print(
        f"indexed {n} documents into {args.collection!r}: version {version} "
        f"({', '.join(info.kinds)}) in {seconds:.1f} s"
    )
    if encoded:
        from specrag.indexing.encodings.session import summary

        print(f"documents encoded / reused from the encoding store: {summary(encoded)}")
    return 0


def cmd_refresh(args) -> int:
    service = _service()
    try:
        out = service.refresh(args.name)
    finally:
        service.close()
    print(
        f"refreshed {args.name!r}: delta {out.id} over version {out.base} holds {out.n_docs} "
        f"documents ({out.n_superseded} replace base rows); encoded {out.encoded}, "
        f"reused {out.reused}"
    )
    return 0


def cmd_merge(args) -> int:
    service = _service()
    try:
        started = time.perf_counter()
        version = service.merge_now(args.name, progress_bar=True)
        seconds = time.perf_counter() - started
        encoded = service.versions(args.name).manifest(version).get("encodings")
    finally:
        service.close()
    print(f"merged {args.name!r} into version {version} in {seconds:.1f} s")
    if encoded:
        from specrag.indexing.encodings.session import summary

        print(f"documents encoded / reused from the encoding store: {summary(encoded)}")
    return 0


def cmd_search(args) -> int:
    from specrag.retrieval.request import SearchRequest

    request = SearchRequest(
        query=args.query, k=args.k, retriever=args.retriever, filter=_filter(args),
        include=["title", "scores"],
    )  # fmt: skip
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
    from specrag.retrieval.evaluation import evaluate, write_trec_run
    from specrag.retrieval.request import SearchRequest

    queries, qrels, skipped = _judged(args)
    qids = list(queries)
    request = SearchRequest(query="-", k=args.depth, retriever=args.retriever)
    service = _service()
    try:
        started = time.perf_counter()
        version, hits = service.search_batch(args.collection, [queries[q] for q in qids], request)
        seconds = time.perf_counter() - started
    finally:
        service.close()
    run = dict(zip(qids, hits, strict=True))
    write_trec_run(args.run_out, run, tag=f"specrag-{args.retriever}", depth=args.depth)
    print(
        f"evaluated {len(qids)} queries ({skipped} without judgments skipped) "
        f"with {args.retriever} on {args.collection!r} version {version.id} in {seconds:.1f} s"
    )
    for name, value in evaluate(run, qrels).items():
        print(f"{name:<8} {value:.4f}")
    print(f"run written to {args.run_out}")
    return 0


def cmd_calibrate(args) -> int:
    from specrag.retrieval.request import PrfSpec, RerankSpec, SearchRequest

    queries, qrels, skipped = _judged(args)
    fields: dict = {"query": "-", "k": args.depth, "retriever": args.retriever}
    if args.rerank:  # else the retriever's default pipeline, as a search request gets it
        fields["rerank"] = RerankSpec(method=args.rerank, model=args.rerank_model)
    if args.fusion:
        fields["fusion"] = args.fusion
    if args.prf:
        fields["prf"] = PrfSpec.model_validate_json(args.prf)
    request = SearchRequest(**fields)
    service = _service()
    try:
        path, n = service.calibrate(args.collection, queries, qrels, request)
    finally:
        service.close()
    rerank = f" + {args.rerank}" if args.rerank else ""
    print(
        f"calibrated {args.retriever}{rerank} on {n} queries ({skipped} without judgments "
        f"skipped); written to {path}"
    )
    print(
        "search requests with the same retriever/fusion/prf/rerank settings and k <= "
        f"{args.depth} can now use min_relevance"
    )
    return 0


def cmd_ask(args) -> int:
    from specrag.api.schemas import AskRequest
    from specrag.generation.service import GeneratorUnavailable

    body = AskRequest(
        question=args.question, k=args.k, retriever=args.retriever, filter=_filter(args),
        model=args.model, draft_model=args.draft_model, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, seed=args.seed, speculative=not args.no_speculative,
        drafters=[d.strip() for d in args.drafters.split(",") if d.strip()],
    )  # fmt: skip
    service = _service()
    answer = None
    try:
        for event, value in service.ask(args.collection, body):
            if event == "delta" and not args.json:
                sys.stdout.write(value)
                sys.stdout.flush()
            elif event == "done":
                answer = value
    except GeneratorUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        service.close()
    if args.json:
        print(answer.model_dump_json(indent=2))
        return 0
    print()
    for c in answer.citations:
        print(f"{'*' if c.cited else ' '}[{c.number}] {c.doc_id}  {(c.title or '')[:80]}")
    print(json.dumps(answer.stats))
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    from specrag.api.app import create_app
    from specrag.api.observability import configure_logging

    settings = Settings()
    print(f"specrag home: {settings.home}", file=sys.stderr)
    warning = keys_cli.check_exposure(settings, args.host)  # no keys: loopback only
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    configure_logging(settings.log_format)  # the request id on every line (and uvicorn's)
    if getattr(args, "ray", None) is not None:
        from specrag.api import ray_serve

        ray_serve.run(settings, args.host, args.port, args.replicas, args.ray or None)
        return 0
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None)
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
        print(
            f"{c.name:<24} {c.n_documents:>9} docs  kinds={','.join(c.kinds)}  "
            f"version={c.current_version or '-'}"
        )
    return 0


def cmd_demo(args) -> int:
    corpus = args.corpus or _demo_corpus()
    service = _service()
    try:
        if not _demo_version_opens(service):
            print(
                f"building the {DEMO_COLLECTION!r} collection from {corpus} "
                f"({', '.join(DEMO_KINDS)}) ..."
            )
            _n, docs = _documents(corpus, "fail")
            service.index(DEMO_COLLECTION, docs, DEMO_KINDS, progress_bar=True)
    finally:
        service.close()
    print(
        f"serving on http://{args.host}:{args.port}  (another port: specrag demo --port N; "
        f"try: specrag search --collection demo --query 'stem cells')"
    )
    return cmd_serve(args)


def _demo_version_opens(service) -> bool:
    """Whether the demo collection has a current version this code can read (one built
    by an older specrag, in an older index format, is rebuilt rather than served broken)."""
    from specrag.indexing.kinds.impact.index import IndexFormatError
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
    if not DEMO_CORPUS.exists():
        raise UserError(f"demo corpus not found: {DEMO_CORPUS} (a broken install?)")
    return DEMO_CORPUS


def _filter(args):
    return _json_arg(args.filter, "--filter") if args.filter else None


def _json_arg(raw: str, flag: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UserError(f"{flag} is not valid JSON: {exc}") from None


def _message(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors()
        )
    if isinstance(exc, LookupError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]  # KeyError's str() adds quotes
    return str(exc) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())

"""One build-throughput run of ``bench_scale.py build`` in a process of its own (fresh
torch and Ray state): build bm25 + dense (MiniLM) over the first ``--docs`` SciFact
documents into a fresh collection folder, and print its figures as one JSON line.

Modes: ``local`` (``VersionStore.build``, torch on ``--cores`` threads), ``ray-N`` (Ray
Data build, N encoder actors reserving ``cores / N`` CPUs and encoding on as many torch
threads, on a local Ray started with ``--cores`` CPUs). Every run encodes every document:
the collection folder is new (an empty encoding store), and the Ray path does not read the
store; the line says how many documents were encoded.

Run: python scripts/scale_build_run.py MODE [--docs 5000] [--cores 2] [--corpus PATH]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

SCIFACT = Path("/work/shared/data/scifact/corpus.jsonl")
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "scale"
KINDS = {"bm25": {}, "dense": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", help="local, ray-1, ray-2, ...")
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--corpus", type=Path, default=SCIFACT)
    parser.add_argument("--label", help="the run's name in the result (default: the mode)")
    args = parser.parse_args()

    import torch

    from specrag.indexing.readers import read_documents
    from specrag.indexing.versions import VersionStore

    docs = list(itertools.islice(read_documents(args.corpus), args.docs))
    CACHE.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix=f"build-{args.mode}-", dir=CACHE))
    store = VersionStore(home / "collection")
    figures: dict = {"mode": args.label or args.mode, "docs": len(docs), "cores": args.cores}
    load_before = os.getloadavg()
    try:
        if args.mode == "local":
            torch.set_num_threads(args.cores)
            figures["threads"] = f"{args.cores} torch threads, one process"
            t0 = time.perf_counter()
            version = store.build(docs, KINDS)
            wall = time.perf_counter() - t0
            manifest = store.manifest(version)
            (enc,) = manifest["encodings"].values()
            figures["encoded"] = enc["encoded"]
            figures["encode_s"] = enc["seconds"]
        else:
            actors = int(args.mode.removeprefix("ray-"))
            per_actor = max(1, args.cores // actors)
            import ray

            from specrag.indexing.ray_build import build_with_ray
            from specrag.indexing.scaleout import RayOptions

            t0 = time.perf_counter()
            ray.init(
                num_cpus=args.cores,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={
                    "env_vars": {
                        k: os.environ[k]
                        for k in ("PYTHONPATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
                        if k in os.environ
                    }
                },
            )
            figures["ray_init_s"] = round(time.perf_counter() - t0, 2)
            figures["threads"] = f"{actors} actor(s) x {per_actor} torch thread(s)"
            options = RayOptions(concurrency=actors, cpus_per_actor=per_actor, num_gpus=0)
            t0 = time.perf_counter()
            version = build_with_ray(store, docs, KINDS, options=options)
            wall = time.perf_counter() - t0
            manifest = store.manifest(version)
            # The Ray path encodes every document on the pool (it does not read the store).
            figures["encoded"] = len(docs)
            figures["encode_s"] = manifest["kinds"]["dense"]["build_seconds"]
            ray.shutdown()
        figures["build_s"] = round(wall, 2)
        figures["bm25_s"] = manifest["kinds"]["bm25"]["build_seconds"]
        figures["dense_s"] = manifest["kinds"]["dense"]["build_seconds"]
        figures["docs_per_s"] = round(len(docs) / wall, 2)
        figures["load_before"] = [round(x, 2) for x in load_before]
        figures["load_after"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print("RESULT " + json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()

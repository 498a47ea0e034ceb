"""Rebuild the public test collections that relevance defaults are chosen on, in BEIR layout.

SciFact (``../shared/data/scifact``) is the collection the first defaults were tuned on; to
choose defaults that generalize (``scripts/bench_relevance.py``, leave one collection out)
we need collections of other domains. Seven classic test collections and NFCorpus are
small, public and kept in public GitHub repositories, so each is rebuilt here from pinned
files (repository + commit + path, with its sha256 checked):

============  ===================================  =======  ========  =====================
name          domain                               docs     queries   judgements
============  ===================================  =======  ========  =====================
cranfield     aeronautics abstracts (1960s)        1,400    225       graded 1-4 (Cleverdon)
cisi          library and information science      1,460    76        binary
npl           electrical engineering (title-like)  5,000 *  93        binary
cacm          computer science (CACM 1958-1979)    3,204    52        binary
med           medicine (MEDLINE abstracts)         1,033    30        binary
adi           information science                  82       35        binary
lisa          library and information science      6,004    35        binary
nfcorpus      nutrition and medicine (NFCorpus) **  3,395    647       graded 2-1
============  ===================================  =======  ========  =====================

None of the classic ones has a train or dev split, so each query goes by a fixed hash of
``<collection>:<query id>`` (sha256, even -> ``dev``, odd -> ``test``) into the choosing
half (``qrels/dev.tsv``) or the test half (``qrels/test.tsv``): the same split on every
machine, and no query is in both. NFCorpus (**; Boteva et al., ECIR 2016) keeps its own
dev and test splits: its ``titles`` queries (BEIR's 323 test queries), its 2-1-0
judgements, and the union of its dev and test documents (its train documents are not in
the source); its authors lowercased the texts, removed stop words and numbers. Every collection but NPL keeps every document; NPL (*) keeps
5,000 of its 11,426 (every judged document, then a seeded random sample of the others), as
encoding all of them took ~45 minutes on a shared 2-core machine. Cranfield's relevance
codes run the wrong way for nDCG (1 = "complete answer" ... 4 = "minimum interest", -1 =
"no interest"), so the gain written is ``5 - code`` for codes 1-4 and codes -1 are
dropped; its queries are numbered 1..225 in file order, as its qrels number them (the
``.I`` numbers in ``cran.qry`` skip).

Output per collection, under ``--out`` (default ``<repo>/.cache/collections``)::

    <name>/corpus.jsonl          {"_id", "title", "text"} per line
    <name>/queries.jsonl         {"_id", "text"}, every query that has a judgement
    <name>/qrels/dev.tsv         query-id, corpus-id, score (header line), choosing half
    <name>/qrels/test.tsv        the test half
    <name>/collection.json       source, split rule and counts

Sources are read from a local bare mirror when ``--mirror DIR`` holds one
(``DIR/<owner>+<name>/repo``, e.g. the ``/work/.mirror`` of a session), else downloaded
from ``raw.githubusercontent.com`` at the pinned commit. Run::

    python scripts/fetch_collections.py [--only cisi,npl] [--mirror /work/.mirror] [--out DIR]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import re
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / ".cache" / "collections"

Qrels = dict[str, dict[str, int]]
Docs = list[dict[str, str]]
Queries = dict[str, str]


@dataclass(frozen=True)
class Source:
    """One pinned file of a public GitHub repository."""

    repo: str  # owner/name
    commit: str
    path: str
    sha256: str

    def read(self, mirror: Path | None) -> bytes:
        """The file's bytes, from the local mirror when it has the repository, else from
        GitHub; raises when the checksum differs."""
        local = mirror / self.repo.replace("/", "+") / "repo" if mirror else None
        if local is not None and local.exists():
            data = subprocess.run(
                ["git", "--git-dir", str(local), "show", f"{self.commit}:{self.path}"],
                capture_output=True, check=True,
            ).stdout  # fmt: skip
        else:
            url = f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.path}"
            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.sha256:
            raise ValueError(f"{self.repo}@{self.commit[:10]}:{self.path}: sha256 {digest}, "
                             f"expected {self.sha256}")  # fmt: skip
        return data


# -- the SMART format of Cranfield and CISI (".I id" records with ".X" fields) ----------


def smart_records(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    """``(id, {field letter: text})`` per ``.I`` record; fields are ``.T``, ``.W`` ..."""
    record_id, fields, current = None, {}, None
    for line in text.splitlines():
        head = re.match(r"^\.([A-Z])(?:\s+(\S+))?\s*$", line)
        if head and head.group(1) == "I":
            if record_id is not None:
                yield record_id, _joined(fields)
            record_id, fields, current = head.group(2), {}, None
        elif head:
            current = head.group(1)
            fields.setdefault(current, [])
        elif current is not None:
            fields[current].append(line.strip())
    if record_id is not None:
        yield record_id, _joined(fields)


def _joined(fields: dict[str, list[str]]) -> dict[str, str]:
    return {key: " ".join(part for part in lines if part) for key, lines in fields.items()}


def smart_docs(text: str) -> Docs:
    """Title ``.T`` and body ``.W``; a document without a body keeps its title as text."""
    docs = []
    for doc_id, fields in smart_records(text):
        title, body = fields.get("T", ""), fields.get("W", "")
        docs.append({"_id": str(int(doc_id)), "title": title, "text": body or title})
    return docs


# -- LISA's format: "Document N" records ending in a line of stars, "#"-ended queries -----


def lisa(read: Callable[[str], str]) -> tuple[Docs, Queries, Qrels]:
    """Documents over the files of ``LISA_DOCS`` (title: the lines before the first blank
    one; a record without its ``Document N`` line continues the previous one); queries ``N`` then text up to ``#``; qrels ``Query N`` / ``k Relevant Refs:`` /
    ids ended by ``-1``."""
    docs = []
    text = "\n".join(read(f"docs/{name}") for name, _ in LISA_DOCS)
    for record in re.split(r"^\*+\s*$", text, flags=re.M):
        lines = record.strip().splitlines()
        if not lines:
            continue
        head = re.match(r"^Document\s+(\d+)$", lines[0].strip())
        if head is None:  # a record without its header (after 2001): the previous one's
            docs[-1]["text"] += " " + " ".join(record.split())
            continue
        body = re.split(r"\n\s*\n", "\n".join(lines[1:]).strip(), maxsplit=1)
        title = " ".join(body[0].split())
        docs.append({"_id": head.group(1), "title": title,
                     "text": " ".join(body[1].split()) if len(body) > 1 else title})  # fmt: skip
    first = {d["_id"]: d for d in reversed(docs)}  # 1998-2001 are in two files: keep the first
    docs = [d for d in docs if first[d["_id"]] is d]
    queries = {}
    for record in read("queries").split("#"):
        lines = record.strip().splitlines()
        if lines:
            queries[str(int(lines[0]))] = " ".join(" ".join(lines[1:]).split())
    qrels: Qrels = {}
    for qid, refs in re.findall(
        r"Query\s+(\d+)\s*\n\s*\d+\s+Relevant Refs:\s*\n([-\d\s]*?)-1", read("qrels")
    ):
        qrels[qid] = dict.fromkeys(refs.split(), 1)
    return docs, queries, qrels


# -- NPL's format: an id line, text lines, a "/" line -----------------------------------


def slash_records(text: str) -> Iterator[tuple[str, str]]:
    """``(id, text)`` per record of NPL's files (records end with a line ``/``)."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.strip() == "/":
            if lines:
                yield lines[0].strip(), " ".join(part.strip() for part in lines[1:]).strip()
            lines = []
        elif line.strip() or lines:
            lines.append(line)


# -- the collections -------------------------------------------------------------------


def cranfield(read: Callable[[str], str]) -> tuple[Docs, Queries, Qrels]:
    docs = smart_docs(read("docs"))
    records = list(smart_records(read("queries")))
    queries = {str(n): fields.get("W", "") for n, (_, fields) in enumerate(records, start=1)}
    qrels: Qrels = {}
    for line in read("qrels").splitlines():
        if line.strip():
            qid, doc_id, code = line.split()[:3]
            if int(code) in (1, 2, 3, 4):  # -1: "no interest"
                qrels.setdefault(qid, {})[doc_id] = 5 - int(code)
    return docs, queries, qrels


def smart_binary(read: Callable[[str], str]) -> tuple[Docs, Queries, Qrels]:
    """SMART documents and queries (``.W``), binary qrels lines ``qid doc ...`` (CISI, CACM,
    MED, ADI); ids as integers written plainly (CACM pads its query ids: ``01``)."""
    docs = smart_docs(read("docs"))
    queries = {str(int(q)): fields.get("W", "") for q, fields in smart_records(read("queries"))}
    qrels: Qrels = {}
    for line in read("qrels").splitlines():
        if line.strip():
            qid, doc_id = line.split()[:2]
            qrels.setdefault(str(int(qid)), {})[str(int(doc_id))] = 1
    return docs, queries, qrels


def npl(read: Callable[[str], str]) -> tuple[Docs, Queries, Qrels]:
    docs = [{"_id": i, "title": "", "text": t} for i, t in slash_records(read("docs"))]
    queries = {qid: text.lower() for qid, text in slash_records(read("queries"))}
    qrels: Qrels = {}
    for qid, ids in slash_records(read("qrels")):
        qrels[qid] = dict.fromkeys(ids.split(), 1)
    return docs, queries, qrels


# -- NFCorpus (Boteva et al., ECIR 2016): tab-separated files of its own dev/test splits --


def tab_pairs(text: str) -> Iterator[tuple[str, str]]:
    """``(id, text)`` per line ``ID<TAB>TEXT``."""
    for line in text.splitlines():
        if line.strip():
            key, value = line.split("\t", 1)
            yield key, value.strip()


def nfcorpus(read: Callable[[str], str]) -> tuple[Docs, Queries, Qrels]:
    """The documents of the dev and test splits (their union, dev's order first), the
    ``titles`` queries (the type BEIR's NFCorpus uses) and the 2-1-0 judgements (the
    grades its authors evaluated with) of both splits."""
    texts: dict[str, str] = {}
    for split in ("dev", "test"):
        texts.update((i, t) for i, t in tab_pairs(read(f"{split}-docs")) if i not in texts)
    docs = [{"_id": i, "title": "", "text": t} for i, t in texts.items()]
    queries = {q: t for split in ("dev", "test") for q, t in tab_pairs(read(f"{split}-queries"))}
    qrels: Qrels = {}
    for split in ("dev", "test"):
        for line in read(f"{split}-qrels").splitlines():
            if line.strip():
                qid, _, doc_id, grade = line.split()
                qrels.setdefault(qid, {})[doc_id] = int(grade)
    return docs, queries, qrels


def nfcorpus_splits(read: Callable[[str], str]) -> dict[str, str]:
    """Query id -> its split in NFCorpus itself (dev chooses, test tests)."""
    return {q: split for split in ("dev", "test") for q, _ in tab_pairs(read(f"{split}-queries"))}


@dataclass(frozen=True)
class Collection:
    name: str
    domain: str
    parse: Callable[[Callable[[str], str]], tuple[Docs, Queries, Qrels]]
    sources: dict[str, Source]  # "docs" (LISA: "docs/<file>"), "queries", "qrels"
    #: Cap on the corpus (encoding time on a shared CPU): every judged document is kept,
    #: then others drawn at random (``SUBSET_SEED``) up to the cap, in corpus order.
    max_docs: int | None = None
    #: The collection's own query splits (query id -> "dev" or "test"), where it has them;
    #: else ``split_of``'s hash decides.
    splits: Callable[[Callable[[str], str]], dict[str, str]] | None = None


_CRAN = ("noramtboraas/information-retrieval", "4ea1b8e02da1db64b68b0364d50620b3c95528dc")
_CISI = ("Shakiba-Alipour/Information-Retrieval-on-CISI", "7a23c34602e8949d795bb1835004546e00d1d1ba")  # fmt: skip  # noqa: E501
_CACM = ("atcherepanov/Stemming-Algorithm", "a92ce141e3cba95b0213569a42cb1668201963f7")
_BELIEF = ("lailaglez/belief-network-irs", "9094e4cde738bd93ed1747dc958b5acb0e0fa684")
_LISA = ("HamzaMouaz/AI-powered-information-retrieval-system", "9b403e8cde7fe9c7d2ec0feaca19a1198d87579d")  # fmt: skip  # noqa: E501
#: LISA's documents come in 14 files (name, sha256), read in this order.
LISA_DOCS = (
    ("LISA0.001", "fa0c58d8a489ad7de4f930d2b4a42f33c7fd9e9e947f3c6900fc99906ce4c261"),
    ("LISA0.501", "edea7bc2ee70458931952e7094071b9687669ab9265476457c63009d1aff6de5"),
    ("LISA1.001", "5607c12adba7d536345b6f6af8e47d1fa7f70b5588a29470e08cde600d3601e5"),
    ("LISA1.501", "d3e1cc75c5f0e1fda0203951d9afaceaa6acdca8fbc7f9d2c921edad04e157ae"),
    ("LISA2.001", "25e3b410db0d78e34dbc370da49307748ccbc51521d28e7f057fcde4856ef3e6"),
    ("LISA2.501", "8894940c4bf2a363aa9490064cb620cc4056120e5ffc47da7afe199a7a4ccc26"),
    ("LISA3.001", "7abad5a2fe410a96ac30d0cfc9bbd4a8e108ad339e900fe502c2ea5687481de4"),
    ("LISA3.501", "e1b658aaa45cfcc71bc30c24e43601c014a6d1cad9d94f6db09a3f6863a2f481"),
    ("LISA4.001", "ba5dbe032b1973de2add02ddc3a3f9a86076153239fd34ce73176852b86fbdd4"),
    ("LISA4.501", "ab1d6de7e40c2b1f9649d0e4de169e8e1b48e2afc2167a956386c4237a3cf589"),
    ("LISA5.001", "fb3d6335ed2385803811496aff189ac04edfb1868956e7b972658ea7f313abec"),
    ("LISA5.501", "496e645526acbe06b0f5d2a740424d456da9c826cfe421204f1fb39b88096410"),
    ("LISA5.627", "53bb3e04023fa3b65924582879d2c9d5daa358cad4731c99fba58adf5635b492"),
    ("LISA5.850", "195854175de7cda61fb04b402d863ad32f78c53732846e83939c8620abb0c9e3"),
)
_NPL = ("stefreschke/Information-Retrieval", "ec84884f012ae2c655004f1025753381bef27adb")
_NF = ("hakimamarullah/medisearch-api", "0ae71a4bb2416506dbdd9a5f8894e7830b99f19f")

COLLECTIONS = {
    c.name: c
    for c in [
        Collection("cranfield", "aeronautics abstracts", cranfield, {
            "docs": Source(*_CRAN, "cran.all.1400", "fbb8935a93263ab6c9fadefb507fd7cd5e101e7fbeb31c12e6bff6dd501315e8"),
            "queries": Source(*_CRAN, "cran.qry", "99578ceb88941ef89c14faf7c63c23776a376d8fba319b990f01d0c601d8b03f"),
            "qrels": Source(*_CRAN, "cranqrel", "a90f56082cd44db70bf2c21ebca39a1a34e37c82ccb5ddf1bcc64f18795234c7"),
        }),
        Collection("cisi", "library and information science", smart_binary, {
            "docs": Source(*_CISI, "CISI.ALL", "c13934ad921234b571e7b424af3461fe39dccb16757cb21954b3aea5250d072e"),
            "queries": Source(*_CISI, "CISI.QRY", "b72de0e0cb8aa5c93ac988e5be0400cc18949d0a94913a248783a37dd97d5470"),
            "qrels": Source(*_CISI, "CISI.REL", "f7396c92586c61953ccb7ae99ad8d3ac749ac3b989041fc93a9e311568f58997"),
        }),
        Collection("npl", "electrical engineering titles and abstracts", npl, {
            "docs": Source(*_NPL, "npl/doc-text", "a69b907bdbf59e43b8004e521eb3560dbbaa9cd5facfad4b30b0392434ba18e4"),
            "queries": Source(*_NPL, "npl/query-text", "0f5e9a179334183cc3b04fe24d9bdfc3f656b08330e6798d8df5dc621bf8e6d5"),
            "qrels": Source(*_NPL, "npl/rlv-ass", "1af78732abed49055218c1548c27cfa354c5d02a9b6c9cb854b9d0b74fcce24c"),
        }, max_docs=5000),
        Collection("cacm", "computer science (Communications of the ACM)", smart_binary, {
            "docs": Source(*_CACM, "cacm.all", "10b28e355d4bd65916698da9bbc91e78f116de204b9b42bce0ce4e8b39babe42"),
            "queries": Source(*_CACM, "query.text", "07332cfcadad2570ce65146a701b4d93a91583c6f945fb32fad1a141b62dc0e4"),
            "qrels": Source(*_CACM, "qrels.text", "a027893039f4faf40b90a64a27322e85e1b0cc66f9634bb754a93ac4f81a75ca"),
        }),
        Collection("med", "medicine (MEDLINE abstracts)", smart_binary, {
            "docs": Source(*_BELIEF, "med/MED.ALL", "fdcd99cf7fc6c45707c9b5bef7daac739f06c4063ebcad9b5cccf2f939fa4236"),
            "queries": Source(*_BELIEF, "med/MED.QRY", "41fbc9d7a0ac8620d53e09b3429d2695cecc63d4bf7e15e55bbcee0785a1798c"),
            "qrels": Source(*_BELIEF, "med/MED.REL", "9bbcf3b73afc8b0f54362b516f323e52ab3c4147d146dedeb18fdba01f0a4288"),
        }),
        Collection("adi", "information science (ADI, 82 documents)", smart_binary, {
            "docs": Source(*_BELIEF, "adi/ADI.ALL", "7154f3d91194ca290e306da8803b24eef311064479ec33ab88dac7a9ecd4a3fa"),
            "queries": Source(*_BELIEF, "adi/ADI.QRY", "5c6b19a1f1ffa3ad479f3c85914ea6590e05cc0406c8b439e8143917961f380c"),
            "qrels": Source(*_BELIEF, "adi/ADI.REL", "8c75a2e1f0f02011ba1e6b25893d70ddd2f5602fc9a694a2ab6781e0ec66d745"),
        }),
        Collection("lisa", "library and information science abstracts (LISA)", lisa, {
            "queries": Source(*_LISA, "LISA.QUE", "d2f042f4f68f8c67546dc44aba073e6acd3582be6e88c7f41a948b760eaea935"),
            "qrels": Source(*_LISA, "LISA.REL", "b7bc6ddab84342af41353aebefc0225a70bfb0ff24a40c3140f8905fb218d3a3"),
            **{f"docs/{name}": Source(*_LISA, f"Collections/{name}", sha) for name, sha in LISA_DOCS},
        }),
        Collection("nfcorpus", "nutrition and medicine (NFCorpus; text lowercased and stop words removed by its authors)", nfcorpus, {
            "dev-docs": Source(*_NF, "data/nfcorpus/dev.docs", "b7cf623af8f991e9d006d901a585234da65b0560a215e3bee85f884946b39751"),
            "test-docs": Source(*_NF, "data/nfcorpus/test.docs", "9d779d34db160e63a92a6b753ac79bcbc80d0f04dd01bdde71f38e98d6ad1f16"),
            "dev-queries": Source(*_NF, "data/nfcorpus/dev.titles.queries", "548d2deef61bdc5a9db538f12679c503eb1b117c8ad7d8517493fdb4d5741ca6"),
            "test-queries": Source(*_NF, "data/nfcorpus/test.titles.queries", "be3c7287d8784ab6f24e215693cdb0716468ff090252147415abe26a056a2648"),
            "dev-qrels": Source(*_NF, "data/nfcorpus/dev.2-1-0.qrel", "7828a511ee263e09cb4d9e01c8f7adb4101877f1bc84af2b370af9854d72ffe2"),
            "test-qrels": Source(*_NF, "data/nfcorpus/test.2-1-0.qrel", "854da1b7a95e32383e508a89bf62848dd12b7aed28d2e35796e0190dfb97c3ae"),
        }, splits=nfcorpus_splits),
    ]
}  # fmt: skip


SUBSET_SEED = 0


def subset(docs: Docs, judged: set[str], cap: int) -> Docs:
    """Every judged document plus a fixed random sample of the others, ``cap`` in all."""
    import numpy as np

    others = [i for i, d in enumerate(docs) if d["_id"] not in judged]
    n_more = max(0, cap - (len(docs) - len(others)))
    picked = np.random.default_rng(SUBSET_SEED).choice(len(others), size=n_more, replace=False)
    keep = {others[i] for i in picked.tolist()}
    return [d for i, d in enumerate(docs) if d["_id"] in judged or i in keep]


def split_of(collection: str, qid: str) -> str:
    """``dev`` (choosing) or ``test``, by a fixed hash of the collection and query id."""
    return "dev" if hashlib.sha256(f"{collection}:{qid}".encode()).digest()[0] % 2 == 0 else "test"


def build(collection: Collection, out: Path, mirror: Path | None) -> dict:
    """Write ``out/<name>/`` in BEIR layout; returns what ``collection.json`` records."""

    @functools.cache  # a parser and the split may both read a file (NFCorpus's queries)
    def read(what: str) -> str:
        return collection.sources[what].read(mirror).decode("utf-8")

    docs, queries, qrels = collection.parse(read)
    doc_ids = {d["_id"] for d in docs}
    if len(doc_ids) != len(docs):
        raise ValueError(f"{collection.name}: duplicate document ids")
    qrels = {
        q: {d: g for d, g in rels.items() if d in doc_ids}
        for q, rels in qrels.items()
        if q in queries and queries[q].strip()
    }
    qrels = {q: rels for q, rels in qrels.items() if rels}
    total = len(docs)
    if collection.max_docs is not None and total > collection.max_docs:
        docs = subset(docs, {d for rels in qrels.values() for d in rels}, collection.max_docs)
    folder = out / collection.name
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for doc in docs:
            f.write(json.dumps(doc) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for qid in sorted(qrels, key=_numeric):
            f.write(json.dumps({"_id": qid, "text": queries[qid]}) + "\n")
    counts = {}
    native = collection.splits(read) if collection.splits is not None else None
    for split in ("dev", "test"):
        qids = [q for q in sorted(qrels, key=_numeric)
                if (native[q] if native is not None else split_of(collection.name, q)) == split]  # fmt: skip
        counts[split] = len(qids)
        with open(folder / "qrels" / f"{split}.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for q in qids:
                for d, g in sorted(qrels[q].items(), key=lambda item: _numeric(item[0])):
                    f.write(f"{q}\t{d}\t{g}\n")
    info = {
        "name": collection.name,
        "domain": collection.domain,
        "documents": len(docs),
        "queries": {"dev": counts["dev"], "test": counts["test"]},
        "judgements": sum(len(r) for r in qrels.values()),
        "split": "the collection's own dev (choosing) and test splits"
        if native is not None
        else "sha256('<name>:<query id>')[0] even -> dev (choosing), odd -> test",
        "subset": (
            f"{len(docs)} of {total} documents: every judged one, then others drawn at random "
            f"(numpy seed {SUBSET_SEED}), corpus order kept"
            if len(docs) < total
            else "none: every document kept"
        ),
        "sources": {k: vars(s) for k, s in collection.sources.items()},
    }
    (folder / "collection.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def _numeric(value: str) -> tuple[int, str]:
    return (int(value), value) if value.isdigit() else (1 << 62, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--mirror", type=Path, default=None, help="bare mirrors <owner>+<name>/repo"
    )
    parser.add_argument("--only", default=",".join(COLLECTIONS), help="comma-separated names")
    args = parser.parse_args()
    for name in args.only.split(","):
        info = build(COLLECTIONS[name], args.out, args.mirror)
        print(f"{name}: {info['documents']} documents, queries {info['queries']}, "
              f"{info['judgements']} judgements -> {args.out / name}")  # fmt: skip


if __name__ == "__main__":
    main()

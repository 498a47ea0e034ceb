"""The ``binary`` kind: sign-binarized embeddings, Hamming search, int8 rescoring."""

from specrag.indexing.kinds.base import IndexKind
from specrag.indexing.kinds.binary.build import binary_encodings, build_binary
from specrag.indexing.kinds.binary.config import BinaryConfig
from specrag.indexing.kinds.binary.search import BinarySearcher

KIND = IndexKind(
    name="binary",
    config=BinaryConfig,
    build=build_binary,
    searcher=BinarySearcher,
    encodings=binary_encodings,
    description="Sign-binarized embeddings, Hamming search, int8 rescoring.",
)

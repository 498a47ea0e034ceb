"""The RAG prompt: the question plus the top retrieved passages, numbered [1], [2], ...
so the answer can cite them. The token budget is respected by truncating (then dropping)
passages, never the question."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

INSTRUCTION = "Answer the question using the passages. Cite them as [n]."


@dataclass(frozen=True)
class Passage:
    doc_id: str
    text: str
    title: str | None = None


@dataclass
class BuiltPrompt:
    ids: list[int]
    text: str
    passages: list[Passage]  # the ones in the prompt, [1] first, as truncated there


def _passage_block(number: int, passage: Passage) -> str:
    head = f"[{number}] {passage.title}. " if passage.title else f"[{number}] "
    return head + passage.text.strip().replace("\n", " ")


def _render(tokenizer, question: str, blocks: list[str]) -> str:
    body = "\n".join(blocks)
    user = f"{INSTRUCTION}\n\n{body}\n\nQuestion: {question.strip()}"
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
    return user + "\nAnswer:"


def _encode(tokenizer, text: str) -> list[int]:
    has_template = bool(getattr(tokenizer, "chat_template", None))
    return tokenizer(text, add_special_tokens=not has_template)["input_ids"]


def _truncate(tokenizer, text: str, n_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= n_tokens:
        return text
    return tokenizer.decode(ids[:n_tokens]).rstrip()


def build_prompt(
    tokenizer,
    question: str,
    passages: Sequence[Passage],
    max_prompt_tokens: int = 1024,
    max_passage_tokens: int = 256,
) -> BuiltPrompt:
    """Passages in rank order, each cut to ``max_passage_tokens`` and to what is left of
    ``max_prompt_tokens``; a passage that no longer fits at all is dropped."""
    if not question or not question.strip():
        raise ValueError("the question is empty")
    bare = _encode(tokenizer, _render(tokenizer, question, []))
    if len(bare) > max_prompt_tokens:
        raise ValueError(
            f"the question alone takes {len(bare)} tokens, over max_prompt_tokens={max_prompt_tokens}"
        )
    kept: list[Passage] = []
    blocks: list[str] = []
    used = len(bare)
    for passage in passages:
        left = max_prompt_tokens - used - 8  # numbering and separators
        if left <= 0:
            break
        text = _truncate(tokenizer, passage.text, min(max_passage_tokens, left))
        candidate = Passage(passage.doc_id, text, passage.title)
        block = _passage_block(len(kept) + 1, candidate)
        ids = _encode(tokenizer, _render(tokenizer, question, [*blocks, block]))
        while len(ids) > max_prompt_tokens and text:
            text = _truncate(
                tokenizer,
                text,
                max(0, len(tokenizer(text, add_special_tokens=False)["input_ids"]) - 8),
            )
            candidate = Passage(passage.doc_id, text, passage.title)
            block = _passage_block(len(kept) + 1, candidate)
            ids = _encode(tokenizer, _render(tokenizer, question, [*blocks, block]))
        if not text or len(ids) > max_prompt_tokens:
            break
        kept.append(candidate)
        blocks.append(block)
        used = len(ids)
    text = _render(tokenizer, question, blocks)
    return BuiltPrompt(_encode(tokenizer, text), text, kept)

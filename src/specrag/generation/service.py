"""The generator object the API uses: prompt -> (speculative) decoding -> answer with
citations and stats, whole or streamed. One generator per model name, cached.

torch and transformers are imported only when an LM generator is loaded or runs, so a
service that answers with the extractive mode (or not at all) never imports them."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from specrag.cache import LRUCache
from specrag.errors import UserError
from specrag.generation.prompt import Passage, build_prompt

EXTRACTIVE = "extractive"
DRAFTER_NAMES = ("context", "datastore", "draft-model")
SETTING_HINT = (
    "set SPECRAG_GENERATOR (specrag.settings.Settings.generator) to a transformers causal LM "
    "name or local path, or to 'extractive' for the no-LLM mode"
)


class AskOptionsError(UserError, ValueError):
    """Answer options that do not fit together (HTTP 400)."""


class GeneratorUnavailable(UserError, RuntimeError):
    """No usable generator: the API answers 503 with this message."""


@dataclass
class AskOptions:
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None
    speculative: bool = True
    drafters: Sequence[str] = ("context", "datastore")
    draft_model: str | None = None
    max_prompt_tokens: int = 2048
    max_passage_tokens: int = 384
    stop_strings: Sequence[str] = ()

    def __post_init__(self):
        unknown = set(self.drafters) - set(DRAFTER_NAMES)
        if unknown:
            raise AskOptionsError(
                f"unknown drafters {sorted(unknown)}; known: {', '.join(DRAFTER_NAMES)}"
            )


@dataclass
class Citation:
    number: int
    doc_id: str
    title: str | None
    text: str
    cited: bool  # the answer mentions [number]


@dataclass
class Answer:
    text: str
    citations: list[Citation]
    stats: dict[str, Any] = field(default_factory=dict)


def _citations(
    text: str, passages: Sequence[Passage], cited: set[int] | None = None
) -> list[Citation]:
    if cited is None:
        cited = {int(m) for m in re.findall(r"\[(\d+)\]", text)}
    return [Citation(n, p.doc_id, p.title, p.text, n in cited) for n, p in enumerate(passages, 1)]


class ExtractiveGenerator:
    name = EXTRACTIVE

    def stream(
        self, question: str, passages: Sequence[Passage], options: AskOptions, datastore=None
    ) -> Iterator[tuple[str, Any]]:
        from specrag.generation.extractive import cite, extractive_sentences

        started = time.perf_counter()
        units = extractive_sentences(question, passages)
        # One delta per sentence, so a client shows the answer growing as with an LM.
        parts = [cite(n, s) for n, s in units]
        for i, part in enumerate(parts):
            yield "delta", part if i == 0 else " " + part
        text, cited = " ".join(parts), {n for n, _ in units}
        stats = {
            "generator": EXTRACTIVE,
            "generated_tokens": 0,
            "target_forwards": 0,
            "generation_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        yield "done", Answer(text, _citations(text, passages, cited), stats)

    def answer(self, question, passages, options, datastore=None) -> Answer:
        return _last(self.stream(question, passages, options, datastore))


class LMGenerator:
    """A causal LM answering from the prompt, with retrieval-augmented speculative decoding."""

    def __init__(self, loaded):
        self.loaded = loaded
        self.name = loaded.name
        # One decode step at a time (CPU threads are the bottleneck): held for one step,
        # never across a yield, so concurrent answers interleave by steps and a consumer
        # that stops reading (a slow client) blocks no other answer.
        self._lock = threading.Lock()

    def _step(self, chunks: Iterator[list[int]]) -> list[int] | None:
        """The decoder's next committed tokens (one step), under the lock; None at the end."""
        with self._lock:
            return next(chunks, None)

    def _drafters(self, options: AskOptions, datastore) -> list:
        from specrag.generation.drafters import ContextDrafter, DatastoreDrafter, DraftModelDrafter
        from specrag.generation.model import load_causal_lm

        retrieval = []
        if "context" in options.drafters:
            retrieval.append(ContextDrafter())
        if "datastore" in options.drafters and datastore is not None:
            retrieval.append(DatastoreDrafter(datastore))
        if "draft-model" in options.drafters:
            if not options.draft_model:
                raise AskOptionsError(
                    "drafter 'draft-model' needs a draft_model (SPECRAG_DRAFT_MODEL)"
                )
            draft = load_causal_lm(options.draft_model, self.loaded.device)
            from specrag.generation.drafters import CombinedDrafter

            combined = CombinedDrafter(retrieval) if retrieval else None
            return [DraftModelDrafter(draft.model, retrieval=combined)]
        return retrieval

    def stream(
        self, question: str, passages: Sequence[Passage], options: AskOptions, datastore=None
    ) -> Iterator[tuple[str, Any]]:
        from specrag.generation.decode import (
            DecodeConfig,
            DecodeStats,
            plain_stream,
            speculative_stream,
        )

        tok = self.loaded.tokenizer
        prompt = build_prompt(
            tok, question, passages, options.max_prompt_tokens, options.max_passage_tokens
        )
        config = DecodeConfig(
            max_new_tokens=options.max_new_tokens,
            temperature=options.temperature,
            seed=options.seed,
            eos_token_ids=self.loaded.eos_token_ids,
            stop_strings=tuple(options.stop_strings),
        )
        stats = DecodeStats()
        if options.speculative:
            drafters = self._drafters(options, datastore)
            chunks = speculative_stream(self.loaded.model, prompt.ids, drafters, config, tok, stats)
        else:
            chunks = plain_stream(self.loaded.model, prompt.ids, config, tok, stats)
        tokens: list[int] = []
        sent = ""
        try:
            while (chunk := self._step(chunks)) is not None:
                tokens.extend(chunk)
                text = self._text(tokens, options)
                safe = text.rstrip("\ufffd")  # an incomplete multi-byte character waits
                if options.stop_strings:
                    hold = max(len(s) for s in options.stop_strings) - 1
                    safe = safe[: max(len(sent), len(safe) - hold)]
                if len(safe) > len(sent) and safe.startswith(sent):
                    yield "delta", safe[len(sent) :]
                    sent = safe
        finally:
            chunks.close()  # a consumer that stops early frees the runner (its KV cache) now
        text = self._text(tokens, options)
        if len(text) > len(sent) and text.startswith(sent):
            yield "delta", text[len(sent) :]
        out = stats.as_dict()
        out["prompt_tokens"] = len(prompt.ids)
        out["generator"] = self.name
        out["speculative"] = options.speculative
        yield "done", Answer(text.strip(), _citations(text, prompt.passages), out)

    def _text(self, tokens: list[int], options: AskOptions) -> str:
        from specrag.generation.decode import trim_stop_text

        eos = set(self.loaded.eos_token_ids)
        text = self.loaded.tokenizer.decode(
            [t for t in tokens if t not in eos], skip_special_tokens=True
        )
        return trim_stop_text(text, options.stop_strings)

    def answer(self, question, passages, options, datastore=None) -> Answer:
        return _last(self.stream(question, passages, options, datastore))


def _last(events: Iterator[tuple[str, Any]]) -> Answer:
    result = None
    for kind, value in events:
        if kind == "done":
            result = value
    assert result is not None
    return result


#: Language models kept loaded (each may take gigabytes): the least recently used goes.
GENERATOR_CACHE_SIZE = 2
_generators: LRUCache[Any] = LRUCache(GENERATOR_CACHE_SIZE, "generators")


def get_generator(name: str | None, device: str | None = None):
    """The generator for ``name`` (a model name/path or 'extractive'), loaded once per
    process. Raises GeneratorUnavailable with a message naming the setting."""
    if not name or not name.strip():
        raise GeneratorUnavailable(f"no generator model is configured: {SETTING_HINT}")
    if name == EXTRACTIVE:
        return ExtractiveGenerator()

    def load() -> LMGenerator:
        from specrag.generation.model import load_causal_lm

        try:
            return LMGenerator(load_causal_lm(name, device))
        except Exception as exc:  # noqa: BLE001 -- any load failure means 503
            raise GeneratorUnavailable(
                f"generator {name!r} cannot be loaded ({type(exc).__name__}: {exc}); {SETTING_HINT}"
            ) from exc

    return _generators.get_or_create((name, device), load)

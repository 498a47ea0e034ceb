"""The version a build replaces, for kinds that can reuse part of it (issue #14).

``VersionStore.build`` sets it to the current version's directory (unless the build is
``full``); a builder reads it with ``previous_version()`` and decides on its own whether
what it finds there fits (same config, same model, few changed documents)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

_PREVIOUS: ContextVar[Path | None] = ContextVar("specrag_previous_version", default=None)


def previous_version() -> Path | None:
    """The directory of the complete version this build replaces, or None."""
    return _PREVIOUS.get()


@contextmanager
def building_over(version_dir: Path | None) -> Iterator[None]:
    token = _PREVIOUS.set(Path(version_dir) if version_dir is not None else None)
    try:
        yield
    finally:
        _PREVIOUS.reset(token)

"""Fault injection for the crash tests: a process started with ``SPECRAG_PAUSE_AT=<point>``
stops for ``SPECRAG_PAUSE_S`` seconds (default 60) the first time it reaches that point,
after writing ``SPECRAG_PAUSE_FILE``, so a test can ``kill -9`` it exactly there.

Points: ``refresh`` (a delta segment half written: its hidden folder exists, encoding in
progress) and ``build`` (a version half written, e.g. during a merge). Unset, a point
costs one dictionary lookup.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

_fired: set[str] = set()
_guard = threading.Lock()


def pause_point(name: str) -> None:
    """Pause here once if the environment asks for it (tests only)."""
    if os.environ.get("SPECRAG_PAUSE_AT") != name:
        return
    with _guard:
        if name in _fired:
            return
        _fired.add(name)
    marker = os.environ.get("SPECRAG_PAUSE_FILE")
    if marker:
        Path(marker).write_text(f"{os.getpid()} {name}\n")
    time.sleep(float(os.environ.get("SPECRAG_PAUSE_S", "60")))

"""Result files of the benchmarks: every ``bench_*.py`` writes its figures with
``write_result`` into ``benchmarks/results/<name>.json`` (committed; history stays in git),
and ``scripts/render_benchmarks.py`` turns them into ``docs/benchmarks.md``.

A result file holds what a reader needs to trust a figure: the command that produced it,
the machine, the commit, the code path that ran (in the tables), and the tables.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def machine() -> str:
    """The machine in words: CPU model and cores, and the GPU when torch sees one."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    words = f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        words += f", {torch.cuda.get_device_name(0)}"
    return words


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table(caption: str, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    """One table of a result: ``rows`` are lists in ``columns`` order (numbers stay
    numbers; the renderer formats them)."""
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"row {row} has {len(row)} cells for {len(columns)} columns")
    return {"caption": caption, "columns": columns, "rows": rows}


def write_result(
    name: str,
    title: str,
    tables: list[dict[str, Any]],
    *,
    notes: list[str] | None = None,
    command: str | None = None,
    order: int = 50,
    data: dict[str, Any] | None = None,
    out_dir: Path = RESULTS,
) -> Path:
    """Write ``benchmarks/results/<name>.json``. ``command`` defaults to the running one;
    ``notes`` are markdown paragraphs shown under the title; ``order`` places the section
    in docs/benchmarks.md; ``data`` keeps raw figures that no table shows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "name": name,
        "title": title,
        "order": order,
        "command": command or "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine(),
        "commit": commit(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "notes": notes or [],
        "tables": tables,
        "data": data or {},
    }
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1, default=_plain) + "\n")
    tmp.replace(path)
    print(f"results written to {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return path


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} into a result file")

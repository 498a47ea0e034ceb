"""Ray is an optional extra (``pip install 'specrag[ray]'``): this module is the one place
that imports it, with a message that says how to get it."""

from __future__ import annotations

import os
from typing import Any


class RayUnavailable(RuntimeError):
    """Ray is not installed (the ``ray`` extra)."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(
            "this needs Ray: pip install 'specrag[ray]' (ray[data,serve])"
        ) from exc
    return ray


def ensure_ray(address: str | None = None) -> Any:
    """The ``ray`` module, connected: to ``address`` (``auto``, ``ray://host:10001``,
    ``host:6379``), or when None to the cluster this process already joined, else to a
    new local one (all CPUs, no dashboard). Workers get this process's ``PYTHONPATH``, so
    an uninstalled checkout works on a local cluster."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    env = {k: os.environ[k] for k in ("PYTHONPATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
           if k in os.environ}  # fmt: skip
    if address in (None, "", "local"):
        ray.init(include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
    else:
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
    return ray

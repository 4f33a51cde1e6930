"""Where the workbench keeps what it computes once: converted models, compiled modules."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: Path | None = None) -> Path:
    """The cache folder (created): ``$WORKBENCH_CACHE``, else ``$XDG_CACHE_HOME/workbench``,
    else ``~/.cache/workbench``."""
    if cache_dir is None:
        env = os.environ.get("WORKBENCH_CACHE")
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) if xdg else Path.home() / ".cache"
        cache_dir = Path(env) if env else base / "workbench"
    cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir

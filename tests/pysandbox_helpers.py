"""Helpers for the sandboxed Python agent tests: notebook-like cells and the runtime fixture."""

from __future__ import annotations

import itertools
import linecache
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench._pysandbox._runtime import runtime_path

_cells = itertools.count()


def cell(source: str, **names: Any) -> dict[str, Any]:
    """Run ``source`` as IPython runs a notebook cell: compiled under a file name of its own
    whose lines are in ``linecache`` (so ``inspect.getsource`` finds them), in a fresh
    ``__main__``-like namespace holding ``names``."""
    filename = f"<notebook cell {next(_cells)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "__main__", **names}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


@pytest.fixture(scope="session", autouse=True)
def python_runtime() -> Path:
    """The runtime component, built once per test session (the cache keeps it after)."""
    return runtime_path(progress=False)


def records(path: Path | str) -> list[dict[str, Any]]:
    return list(wb.read_journal(path))


def faults(path: Path | str) -> dict[str, dict[str, Any]]:
    """The last fault of each agent in a journal."""
    return {r["a"]: r["fault"] for r in records(path) if r["k"] == "agent" and r["fault"]}

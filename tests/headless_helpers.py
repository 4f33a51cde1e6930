"""Notebooks for the headless tests, written with nbformat, and the output normaliser."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat

PARAMETERS = "parameters"


def write_notebook(path: Path, cells: Sequence[str | tuple[str, str]]) -> Path:
    """A notebook of code cells; ``("parameters", source)`` is a cell tagged parameters,
    ``("markdown", text)`` a markdown cell."""
    nb: Any = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    for cell in cells:
        if isinstance(cell, tuple) and cell[0] == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(cell[1]))  # type: ignore[no-untyped-call]
            continue
        source = cell[1] if isinstance(cell, tuple) else cell
        code = nbformat.v4.new_code_cell(source)  # type: ignore[no-untyped-call]
        if isinstance(cell, tuple):
            code.metadata["tags"] = [cell[0]]
        nb.cells.append(code)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)  # type: ignore[no-untyped-call]
    return path


_TIMING = re.compile(r"\b\d+(\.\d+)?\s?(s|ms|µs|us|tok/s|tokens/s)\b")
_ADDRESS = re.compile(r"\b0x[0-9a-f]{6,}\b")
_RUN_FOLDER = re.compile(r"\b\d{8}-\d{6}-seed\d+(-\d+)?\b")  # a default journal's folder


def normalised_outputs(nb: Any, paths: Sequence[str]) -> list[list[Any]]:
    """Each code cell's outputs with timings, the given paths, default run folders (named by
    the time) and object addresses replaced by placeholders, and widget model ids (random
    per kernel) replaced by their order."""
    ids: dict[str, str] = {}

    def text(value: str) -> str:
        for path in sorted(paths, key=len, reverse=True):
            value = value.replace(path, "<path>")
        value = _ADDRESS.sub("<address>", value)
        value = _RUN_FOLDER.sub("<run folder>", value)
        return _TIMING.sub("<time>", value)

    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in sorted(value.items())}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str) and key == "model_id":
            return ids.setdefault(value, f"<widget {len(ids)}>")
        return text(value) if isinstance(value, str) else value

    cells = [c for c in nb.cells if c.cell_type == "code"]
    return [[walk(dict(o)) for o in c.outputs] for c in cells]

"""Notebook parameters, papermill-style: ``workbench run NB -p seed=3 -p topic=tides``.

A notebook declares its parameters in one code cell tagged ``parameters`` (plain
assignments: ``seed = 7``). Values given on the command line go into a new cell, tagged
``injected-parameters``, placed right after it, so they override the defaults and the rest of
the notebook sees them. Re-running an executed notebook replaces its injected cell.

A value is typed from its text as a Python literal (``3`` -> int, ``2.5`` -> float,
``"tides"`` -> str, ``[1, 2]`` -> list, ``True`` -> bool, ``None``); text that is not a literal
(``tides``, ``a b``), or whose value no literal writes back (``1e999``), is a string.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

from workbench.errors import ConfigError

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
MAX_PARAMETERS = 256
MAX_VALUE_CHARS = 100_000


def parse_assignments(texts: Sequence[str]) -> dict[str, Any]:
    """``["seed=3", "topic=tides"]`` -> ``{"seed": 3, "topic": "tides"}``.

    Raises ConfigError for a text without ``=``, a name that is not a Python identifier, a
    name given twice, a value over :data:`MAX_VALUE_CHARS` characters, or more than
    :data:`MAX_PARAMETERS` of them.
    """
    if len(texts) > MAX_PARAMETERS:
        raise ConfigError(f"{len(texts)} parameters given; at most {MAX_PARAMETERS}")
    values: dict[str, Any] = {}
    for text in texts:
        name, sep, raw = text.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ConfigError(f"parameter {text!r} is not NAME=VALUE with NAME a Python "
                              "identifier (e.g. -p seed=3 -p topic=tides)")
        if name in values:
            raise ConfigError(f"parameter {name!r} is given twice")
        if len(raw) > MAX_VALUE_CHARS:
            raise ConfigError(f"the value of {name!r} has {len(raw)} characters; at most "
                              f"{MAX_VALUE_CHARS}")
        values[name] = typed_value(raw)
    return values


def typed_value(raw: str) -> Any:
    """The Python literal ``raw`` spells, else ``raw`` itself as a string."""
    try:
        value = ast.literal_eval(raw.strip())
        same = ast.literal_eval(repr(value)) == value  # inf, nan: no literal spells them
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return raw
    return value if same else raw


def declared_parameters(source: str) -> list[str]:
    """Names assigned at the top level of a parameters cell, in order, each once.

    Raises ConfigError if the cell is not valid Python.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ConfigError(f"the cell tagged {PARAMETERS_TAG!r} is not valid Python: "
                          f"{exc.msg} (line {exc.lineno})") from exc
    names: dict[str, None] = {}
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name):
                names.setdefault(target.id)
    return list(names)


def inject_parameters(nb: Any, values: Mapping[str, Any]) -> int | None:
    """Put ``values`` into ``nb`` (an nbformat notebook, changed in place) after its
    parameters cell; return the injected cell's index, or None when ``values`` is empty.

    Raises ConfigError when values are given but no cell is tagged ``parameters``, or when
    a name is not one the parameters cell assigns (the message lists those it does).
    """
    cells = nb.cells
    for index in reversed(range(len(cells))):  # an earlier run's injection is replaced
        if INJECTED_TAG in _tags(cells[index]):
            del cells[index]
    if not values:
        return None
    found = [i for i, c in enumerate(cells)
             if c.get("cell_type") == "code" and PARAMETERS_TAG in _tags(c)]
    if not found:
        raise ConfigError(f"parameters {sorted(values)} given, but no code cell of this "
                          f"notebook is tagged {PARAMETERS_TAG!r}; tag the cell that assigns "
                          "the defaults (JupyterLab: the property inspector, Cell Tags)")
    declared = declared_parameters(_source(cells[found[0]]))
    unknown = [name for name in values if name not in declared]
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}: this notebook's "
                          f"parameters are {', '.join(declared) or '(none)'}")
    nbformat = nbformat_module()
    lines = ["# Parameters given on the command line (workbench run -p)"]
    lines += [f"{name} = {value!r}" for name, value in values.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = [INJECTED_TAG]
    cells.insert(found[0] + 1, cell)
    return found[0] + 1


def _tags(cell: Any) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _source(cell: Any) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def nbformat_module() -> Any:
    """The ``nbformat`` module (imported when needed), typed loosely: its functions carry no
    annotations."""
    import nbformat

    return nbformat

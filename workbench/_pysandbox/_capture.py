"""Capturing a step function (or class) defined in a notebook as an agent package.

What is captured: the function's (or class's) own source, and, for every global name it
uses, found by name in the module (the notebook) it was defined in:

- a literal (None, a bool, number, string or bytes, or a tuple, list, dict, set or
  frozenset of literals): written out with ``repr``;
- a function or class defined in the same notebook (or module): its source, captured the
  same way, recursively;
- a module the sandbox has (``json``, ``re``, ``math``, ...): imported there.

Anything else (an open file, a DataFrame, a module the sandbox lacks, a lambda, a function
from another module) is a ConfigError naming the name and saying what to do. Names the
function uses but the notebook does not define (builtins, or a typo) are left alone: the
sandbox raises NameError as Python would. Each piece keeps its line in the cell, so
tracebacks name the lines the user wrote.
"""

from __future__ import annotations

import ast
import dis
import inspect
import linecache
import textwrap
import types
from typing import Any

from workbench._pysandbox._package import AgentPackage, Piece
from workbench.errors import ConfigError

__all__ = ["SANDBOX_MODULES", "capture"]

SANDBOX_MODULES = ("base64", "bisect", "collections", "copy", "dataclasses", "datetime",
                   "decimal", "enum", "fractions", "functools", "hashlib", "heapq",
                   "itertools", "json", "math", "operator", "random", "re", "statistics",
                   "string", "textwrap", "time", "types", "typing")
"""The modules an agent may import in the sandbox (the guest runtime's ALLOWED)."""
MAX_PIECES = 256
"""Definitions one agent may capture (a bound on the walk through the notebook)."""


def capture(agent: Any, name: str) -> AgentPackage:
    """The package for ``agent`` (a function, or a class whose instances have ``step``).

    Raises ConfigError when it cannot be captured (see the module docstring).
    """
    if inspect.isclass(agent):
        if not callable(getattr(agent, "step", None)):
            raise ConfigError(f"agent {name!r}: class {agent.__name__} has no step method; "
                              "give it step(self, state, inbox, host)")
        kind = "class"
    elif inspect.isfunction(agent):
        if agent.__name__ == "<lambda>":
            raise ConfigError(f"agent {name!r}: a lambda cannot be sandboxed (its source is "
                              "not a definition); write it with def")
        kind = "function"
    else:
        raise ConfigError(f"agent {name!r}: sandbox=True takes a function or a class with a "
                          f"step method, got {type(agent).__name__}")
    walk = _Walk(name)
    walk.add(agent.__name__, agent)
    return AgentPackage(agent.__name__, kind, tuple(walk.pieces))


class _Walk:
    """Depth first, dependencies before the definitions that use them."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.pieces: list[Piece] = []
        self._seen: set[str] = set()

    def add(self, name: str, value: Any, module: str | None = None) -> None:
        if name in self._seen:
            return
        self._seen.add(name)
        if len(self._seen) > MAX_PIECES:
            raise ConfigError(f"agent {self.agent!r} uses over {MAX_PIECES} notebook names; "
                              "capture fewer (pass data in state)")
        if isinstance(value, types.ModuleType):
            self._module(name, value)
        elif _is_literal(value):
            self.pieces.append(Piece(f"{name} = {value!r}\n", 1))
        elif inspect.isfunction(value) or inspect.isclass(value):
            self._definition(name, value, module)
        else:
            self._refuse(name, f"a {type(value).__name__} value")

    def _module(self, name: str, module: types.ModuleType) -> None:
        if module.__name__ not in SANDBOX_MODULES:
            self._refuse(name, f"the module {module.__name__}, which the sandbox does not have")
        line = f"import {module.__name__}" + (f" as {name}" if name != module.__name__ else "")
        self.pieces.append(Piece(line + "\n", 1))

    def _definition(self, name: str, value: Any, module: str | None) -> None:
        if module is not None and value.__module__ != module:
            self._refuse(name, f"{value.__qualname__} from the module {value.__module__}")
        if value.__name__ != name or value.__name__ == "<lambda>":
            self._refuse(name, f"{value.__qualname__}, bound to another name")
        found = _source_of(value)
        if found is None:
            self._refuse(name, f"{value.__qualname__}, whose source cannot be found")
            return
        lines, first = found
        code = textwrap.dedent("".join(lines))
        namespace = _globals_of(value)
        for used in _names_used(value, code):
            if used in namespace and used != name:
                self.add(used, namespace[used], value.__module__)
            elif used in _closure(value):
                self.add(used, _closure(value)[used], value.__module__)
        self.pieces.append(Piece(code, max(first, 1)))

    def _refuse(self, name: str, what: str) -> None:
        raise ConfigError(
            f"agent {self.agent!r} uses {name!r}, {what}; a sandboxed agent can take only "
            "literals, functions and classes defined in the notebook, and the modules "
            f"{', '.join(SANDBOX_MODULES)}. Pass the value in state or a message, or "
            "define it inside the function")


def _source_of(value: Any) -> tuple[list[str], int] | None:
    """(source lines, first line) of a function or class; a class defined in a notebook cell
    (which ``inspect`` cannot always find) is found through its methods' cell."""
    try:
        return inspect.getsourcelines(value)
    except (OSError, TypeError):
        if not inspect.isclass(value):
            return None
    for item in vars(value).values():
        fn = getattr(item, "__func__", getattr(item, "fget", item))
        code = getattr(fn, "__code__", None)
        if code is not None:
            return _class_in(code.co_filename, value.__name__, code.co_firstlineno)
    return None


def _class_in(filename: str, name: str, line: int) -> tuple[list[str], int] | None:
    """The source of class ``name`` in ``filename`` (as linecache has it) around ``line``."""
    lines = linecache.getlines(filename)
    try:
        tree = ast.parse("".join(lines))
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if (isinstance(node, ast.ClassDef) and node.name == name
                and node.lineno <= line <= (node.end_lineno or node.lineno)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            return lines[first - 1:node.end_lineno], first
    return None


def _is_literal(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | complex | str | bytes):
        return not isinstance(value, float | complex) or repr(value) not in ("nan", "inf")
    if isinstance(value, tuple | list | set | frozenset):
        return type(value) in (tuple, list, set, frozenset) and all(map(_is_literal, value))
    if type(value) is dict:
        return all(_is_literal(k) and _is_literal(v) for k, v in value.items())
    return False


def _globals_of(value: Any) -> dict[str, Any]:
    if inspect.isfunction(value):
        return value.__globals__
    module = inspect.getmodule(value)
    return vars(module) if module is not None else {}


def _closure(value: Any) -> dict[str, Any]:
    if not inspect.isfunction(value) or not value.__closure__:
        return {}
    return {n: c.cell_contents for n, c in zip(value.__code__.co_freevars, value.__closure__,
                                               strict=True)}


def _names_used(value: Any, code: str) -> list[str]:
    """Global names a function loads (from its bytecode), or names a class's source loads."""
    if inspect.isfunction(value):
        return sorted(_loaded_globals(value.__code__) | set(value.__code__.co_freevars))
    return sorted({node.id for node in ast.walk(ast.parse(code))
                   if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)})


def _loaded_globals(code: types.CodeType) -> set[str]:
    names = {i.argval for i in dis.get_instructions(code)
             if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _loaded_globals(const)
    return names

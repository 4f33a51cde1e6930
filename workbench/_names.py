"""What an agent name may be, and where a value is not JSON (errors that point at the spot).

Agent names appear in the journal, in messages' ``from``/``to``, in ``inspect`` tables and
in file names of exports, so they are 1-128 printable characters (letters, digits,
punctuation, symbols and spaces: no control characters, NUL, line breaks or lone
surrogates), without ``/`` or ``\\``, not ``.`` or ``..``, and not starting with ``@``
(reserved: ``@user`` sends ``run.send`` messages).
"""

from __future__ import annotations

import json
import math
from typing import Any

from workbench import _canonical
from workbench._types import JSON
from workbench.errors import ConfigError

__all__ = ["MAX_NAME_CHARS", "check_agent_name", "checked_json", "not_json"]

MAX_NAME_CHARS = 128
_RULE = (f"agent names are 1-{MAX_NAME_CHARS} printable characters, without '/' or '\\', "
         "not '.' or '..', not starting with '@'")


def check_agent_name(name: object) -> str:
    """``name`` if it is a valid agent name; ConfigError saying what is allowed otherwise."""
    if not isinstance(name, str):
        raise ConfigError(f"{_RULE}; got {type(name).__name__} {name!r}")
    problem = _name_problem(name)
    if problem:
        raise ConfigError(f"{_RULE}; {name!r} {problem}")
    return name


def _name_problem(name: str) -> str:
    if not name or len(name) > MAX_NAME_CHARS:
        return f"has {len(name)} characters"
    if name.startswith("@"):
        return "starts with '@'"
    if name in (".", ".."):
        return "is a path"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    for i, char in enumerate(name):
        if 0xD800 <= ord(char) <= 0xDFFF:
            return f"has a lone surrogate (U+{ord(char):04X}) at character {i}"
        if not char.isprintable() and char != " ":
            return f"has a control or non-printable character (U+{ord(char):04X}) at character {i}"
    return ""


def checked_json(value: JSON, what: str, context: str) -> JSON:
    """A canonical copy of ``value`` (see ``_canonical.check_json``); ConfigError naming
    ``context`` and the spot in ``value`` (``what``: its name, e.g. ``state``) otherwise."""
    try:
        return _canonical.check_json(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{context}: {not_json(value, what, exc)}; pass plain JSON (dict, "
                          "list, str, int, float, bool, None)") from None


def not_json(value: Any, root: str, error: BaseException) -> str:
    """Why ``value`` (named ``root``) is not JSON, naming the first spot, e.g.
    ``state["items"][3] is a set, not JSON``; ``error`` is what encoding it raised."""
    stack: list[tuple[Any, str]] = [(value, root)]
    seen: set[int] = set()
    while stack:
        item, path = stack.pop()
        problem = _item_problem(item, path)
        if problem:
            return problem
        if isinstance(item, dict | list | tuple):
            if id(item) in seen:
                continue
            seen.add(id(item))
            pairs = (item.items() if isinstance(item, dict) else enumerate(item))
            children = [(v, f"{path}[{_key(k)}]") for k, v in pairs]
            if isinstance(item, dict):
                for k in item:
                    if isinstance(k, str) and _surrogate_at(k) is not None:
                        return f"{path} has a key with a lone surrogate: {_key(k)}"
            stack.extend(reversed(children))
    return f"{root} is not plain JSON ({error})"


def _item_problem(item: Any, path: str) -> str:
    if item is None or isinstance(item, bool | int | dict | list | tuple):
        return ""
    if isinstance(item, str):
        at = _surrogate_at(item)
        return "" if at is None else (f"{path} has a lone surrogate (U+{ord(item[at]):04X}) "
                                      f"at character {at}, which UTF-8 cannot encode")
    if isinstance(item, float):
        return "" if math.isfinite(item) else f"{path} is {item!r}, which JSON does not allow"
    return f"{path} is a {type(item).__name__}, not JSON"


def _surrogate_at(text: str) -> int | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _key(key: Any) -> str:
    return json.dumps(key) if isinstance(key, str) else repr(key)

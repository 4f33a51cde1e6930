"""The step output contract, one for every executor (docs/abi.md, "Output").

A step returns an object with ``state`` (required), ``outbox`` (a list of
``{"to", "payload"}``) and ``status`` (``"ready"``, ``"idle"`` or ``"done"``), and nothing
else. A WebAssembly guest's output is checked as parsed JSON; a Python step function's
return value also may be a ``(state, outbox, status)`` tuple, any mapping, with outbox
entries as ``(to, payload)`` pairs (``pairs=True``). Anything else is a ``malformed_output``
fault whose wording is the same whichever executor ran the step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from workbench._types import Fault, Outgoing, Status, StepResult
from workbench.errors import short_repr

__all__ = ["MESSAGE_KEYS", "OUTPUT_KEYS", "STATUSES", "MalformedOutput", "check_output",
           "json_type", "malformed_fault"]

STATUSES = ("ready", "idle", "done")
OUTPUT_KEYS = frozenset({"state", "outbox", "status"})
MESSAGE_KEYS = frozenset({"to", "payload"})


class MalformedOutput(ValueError):
    """A step's output breaks the contract; the message says how."""


def malformed_fault(reason: str) -> Fault:
    return Fault("malformed_output", f"{reason}; see docs/abi.md for the output format",
                 {"reason": reason})


def json_type(value: Any) -> str:
    """How a value's JSON type reads in a message ("an object", "a list", ...)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def check_output(value: Any, *, pairs: bool = False) -> StepResult:
    """The StepResult of a step's output; MalformedOutput if it breaks the contract.
    ``pairs``: the looser forms a Python step may return (see the module's docstring)."""
    if pairs and isinstance(value, tuple) and len(value) == 3:
        value = {"state": value[0], "outbox": value[1], "status": value[2]}
    if not isinstance(value, Mapping if pairs else dict):
        raise MalformedOutput(f"output must be a JSON object, got {json_type(value)}")
    unknown = sorted(map(str, set(value) - OUTPUT_KEYS))
    if unknown:
        raise MalformedOutput(f"output has unknown keys {unknown} "
                              "(allowed: state, outbox, status)")
    if "state" not in value:
        raise MalformedOutput("output has no 'state'")
    status = value.get("status", "ready")
    if not isinstance(status, str) or status not in STATUSES:
        raise MalformedOutput(f"'status' must be one of {list(STATUSES)}, "
                              f"got {short_repr(status, 60)}")
    outbox = value.get("outbox", [])
    if not isinstance(outbox, list | tuple if pairs else list):
        raise MalformedOutput(f"'outbox' must be a list, got {json_type(outbox)}")
    messages = tuple(_message(i, entry, pairs) for i, entry in enumerate(outbox))
    return StepResult(state=value["state"], outbox=messages, status=cast(Status, status))


def _message(index: int, entry: Any, pairs: bool) -> Outgoing:
    where = f"outbox[{index}]"
    if isinstance(entry, Mapping if pairs else dict):
        if set(entry) != MESSAGE_KEYS:
            raise MalformedOutput(f"{where} must have exactly the keys 'to' and 'payload', "
                                  f"got {sorted(map(str, entry))}")
        to, payload = entry["to"], entry["payload"]
    elif pairs and isinstance(entry, tuple | list) and len(entry) == 2:
        to, payload = entry
    else:
        either = " (or a (to, payload) pair)" if pairs else ""
        raise MalformedOutput(f"{where} must be an object{either}, got {json_type(entry)}")
    if not isinstance(to, str) or not to:
        raise MalformedOutput(f"{where}.to must be a non-empty string, "
                              f"got {short_repr(to, 60)}")
    return Outgoing(to=to, payload=payload)

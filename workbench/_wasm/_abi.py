"""Agent ABI v1, the data half: step input encoding, output decoding, outcomes, host protocol.

Nothing here touches wasmtime. :func:`encode_input` turns a :class:`StepRequest` into the
canonical JSON bytes the guest's ``step`` receives; :func:`decode_output` turns the bytes the
guest returned into a :class:`StepResult`, and never raises on bad guest output: every
malformation becomes a :class:`Fault`. :class:`StepOutcome` is what the sandbox reports for
one step (plain data, so a worker process can send it over a pipe) and :class:`GuestHost` is
the bytes-level host the sandbox calls (so a worker can forward host calls over its pipe).
See docs/abi.md for the contract.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from workbench._hostcalls import MAX_CALLS_PER_STEP, UnreadableRequest
from workbench._output import MalformedOutput as _Malformed
from workbench._output import check_output, malformed_fault
from workbench._types import (
    JSON,
    AgentIdentity,
    Fault,
    HostCalls,
    Limits,
    StepRequest,
    StepResult,
    limit_fault,
)
from workbench.errors import short_repr

__all__ = [
    "ABI_VERSION",
    "MAX_HOSTCALL_BYTES",
    "MAX_HOST_CALLS",
    "MAX_INFER_CALLS",
    "MAX_LOG_BYTES",
    "MAX_STEP_HOSTCALL_BYTES",
    "GuestHost",
    "HostCallsAdapter",
    "StepOutcome",
    "agent_identity",
    "decode_output",
    "encode_input",
    "fault",
    "input_fault",
    "limit_fault",
    "outcome_to_result",
    "output_too_large",
    "parse_json",
    "step_in_process",
]

ABI_VERSION = 1
MAX_HOSTCALL_BYTES = 1 << 20
"""Largest host-call payload: an infer request or result, a log line."""
MAX_HOST_CALLS = MAX_CALLS_PER_STEP
"""Host calls one guest may make in one step; the next one ends the step with a limit fault.
The run's host counts the same calls against the same number, so it never refuses first."""
MAX_STEP_HOSTCALL_BYTES = 16 << 20
"""Host-call payload bytes (infer requests and results, log lines) copied in one step."""
MAX_LOG_BYTES = 256 << 10
"""Log bytes (the lengths passed to ``log``) one step may write: bounds journal growth."""
MAX_INFER_CALLS = 256
"""``infer`` calls in one step: each holds the step's inference barrier once."""
MAX_JSON_DEPTH = 256
"""Deepest nesting of arrays/objects accepted in guest output."""

class GuestHost(Protocol):
    """The host functions a guest may call during one step, at the byte level.

    ``infer`` gets the guest's request JSON bytes and returns result JSON bytes (an error is
    ``{"error": "..."}``, not an exception). Any exception raised by these methods is a host
    failure, not a guest fault: the sandbox stops the guest and re-raises it from
    :func:`~workbench._wasm._sandbox.run_step`.
    """

    def infer(self, request: bytes) -> bytes: ...

    def log(self, text: bytes) -> None: ...

    def random(self) -> int: ...  # uniform in [0, 2**64)

    def now(self) -> int: ...  # logical nanoseconds, in [0, 2**63)


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What the sandbox observed in one step. Plain data (picklable, comparable).

    Exactly one of ``output`` (the raw output bytes of ``step``) and ``fault`` is set.
    ``memory_at_limit`` is true when the guest's memory could not grow by one more page at
    the end of the step; a guest that then produced bad output is reported as
    ``memory_limit`` by :func:`outcome_to_result`.
    """

    output: bytes | None
    fault: Fault | None
    fuel_consumed: int
    memory_size: int = 0
    memory_at_limit: bool = False
    host_calls: int = 0


def fault(kind: str, detail: str, **data: JSON) -> Fault:
    """Build a :class:`Fault`; ``data`` must be JSON-shaped (it is journaled)."""
    return Fault(kind=kind, detail=detail, data=data)


def encode_input(request: StepRequest) -> bytes:
    """The canonical JSON bytes of a step's input.

    Raises ValueError (NaN/Infinity) or TypeError (not JSON) if the state or a payload is not
    plain JSON; the run validates both before they get here.
    """
    return _canonical(request.to_json())


def input_fault(input_json: bytes, limits: Limits) -> Fault | None:
    """The ``limit`` fault of a step input over ``limits.max_input_bytes``, else None.

    Every executor checks this before dispatching a step, so an input too large for the
    guest (or for a worker frame) is the same journaled fault whatever runs the agent.
    """
    size, most = len(input_json), limits.max_input_bytes
    if size <= most:
        return None
    return limit_fault("max_input_bytes", size, most,
                       f"the step input (state and inbox) is {size} bytes, over the limit of "
                       f"{most}; send fewer or smaller messages, or raise "
                       "Limits(max_input_bytes=...)")


def outcome_to_result(outcome: StepOutcome, *, max_output_bytes: int) -> StepResult:
    """Turn a sandbox outcome into the :class:`StepResult` the scheduler commits."""
    usage = {"fuel": outcome.fuel_consumed, "memory": outcome.memory_size}
    if outcome.fault is not None:
        return StepResult(state=None, fault=outcome.fault, usage=usage)
    result = decode_output(outcome.output or b"", max_output_bytes=max_output_bytes)
    if (result.fault is not None and result.fault.kind == "malformed_output"
            and outcome.memory_at_limit):
        return StepResult(state=None, fault=fault(
            "memory_limit",
            f"the agent reached its memory limit, then its {result.fault.detail}",
            memory_size=outcome.memory_size, cause=result.fault.to_json()), usage=usage)
    return dataclasses.replace(result, usage=usage)


def step_in_process(run_step: Callable[..., StepOutcome], agent: Any, request: StepRequest,
                    host: HostCalls, limits: Limits, timeout_s: float | None) -> StepResult:
    """One step of a sandboxed agent in this process: its input checked against
    ``max_input_bytes``, ``run_step(agent, input, host, ...)`` in a fresh instance (the
    sandbox's own ``run_step``: WebAssembly module or Python runtime), and its outcome as
    the StepResult the scheduler commits."""
    input_json = encode_input(request)
    too_large = input_fault(input_json, limits)
    if too_large is not None:
        return StepResult(state=None, fault=too_large)
    outcome = run_step(agent, input_json, HostCallsAdapter(host), fuel=limits.fuel,
                       memory_bytes=limits.memory_bytes, timeout_s=timeout_s,
                       max_output_bytes=limits.max_output_bytes)
    return outcome_to_result(outcome, max_output_bytes=limits.max_output_bytes)


def decode_output(raw: bytes, *, max_output_bytes: int) -> StepResult:
    """Decode and validate a guest's output JSON. Never raises on bad guest output.

    Returns a StepResult whose ``fault`` is ``limit`` (more than ``max_output_bytes``) or
    ``malformed_output`` (not strict UTF-8, not JSON, NaN/Infinity, duplicate keys, nesting
    deeper than MAX_JSON_DEPTH, or not the ABI v1 shape).
    """
    if len(raw) > max_output_bytes:
        return _failed(output_too_large(len(raw), max_output_bytes))
    try:
        return check_output(_parse(raw))
    except _Malformed as exc:
        return _failed(malformed_fault(str(exc)))


def output_too_large(size: int, max_output_bytes: int) -> Fault:
    return limit_fault("max_output_bytes", size, max_output_bytes,
                       f"output is {size} bytes, over the limit of {max_output_bytes}; raise "
                       "Limits(max_output_bytes=...) or send less")


def _failed(f: Fault) -> StepResult:
    return StepResult(state=None, fault=f)


def _canonical(value: JSON) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _parse(raw: bytes) -> JSON:
    try:
        return parse_json(raw)
    except _Malformed as exc:
        raise _Malformed(f"output {exc}") from None


def parse_json(raw: bytes) -> JSON:
    """Strictly parse guest JSON: UTF-8, no NaN/Infinity (nor floats overflowing to them), no
    duplicate keys, at most MAX_JSON_DEPTH deep. Raises ValueError saying why, worded to
    follow the name of what was parsed ("is not UTF-8 (byte 3)")."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Malformed(f"is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                           object_pairs_hook=_unique_object)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, _Malformed):
            raise
        raise _Malformed(f"is not JSON ({_first_line(str(exc))})") from None
    if _too_deep(value):
        raise _Malformed(f"nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def _too_deep(value: JSON) -> bool:
    """Whether arrays/objects nest deeper than MAX_JSON_DEPTH (iterative: no recursion)."""
    stack: list[tuple[JSON, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _reject_constant(name: str) -> Any:
    raise _Malformed(f"contains {name}, which JSON does not allow")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Malformed(f"contains {short_repr(text, 60)}, too large for a float")
    return value


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, item in pairs:
        if key in obj:
            raise _Malformed(f"has duplicate key {short_repr(key, 60)}")
        obj[key] = item
    return obj


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else text


class HostCallsAdapter:
    """The bytes-level :class:`GuestHost` over a run's :class:`~workbench._types.HostCalls`.

    ``infer`` decodes the guest's request as strictly as output (see :func:`parse_json`; a
    bad one is passed on as an :class:`~workbench._hostcalls.UnreadableRequest`, which the
    host journals and refuses; a refusal, a ValueError from ``host.infer``, is answered
    with an ``{"error": ...}`` reply)
    and encodes the result canonically. ``log`` replaces invalid UTF-8. Anything else
    ``host`` raises propagates: it is a host failure, not the guest's.
    """

    def __init__(self, host: HostCalls) -> None:
        self._host = host

    def infer(self, request: bytes) -> bytes:
        try:
            body: Any = parse_json(request)
        except _Malformed as exc:  # the host still journals the refused call
            body = UnreadableRequest(f"infer request {exc}")
        try:
            return _canonical(self._host.infer(body))
        except ValueError as exc:
            return _canonical({"error": str(exc)})

    def log(self, text: bytes) -> None:
        self._host.log(text.decode("utf-8", errors="replace"))

    def random(self) -> int:
        return int(self._host.random())

    def now(self) -> int:
        return int(self._host.now())


def agent_identity(wasm_sha256: str, limits: Limits,
                   capabilities: tuple[str, ...]) -> AgentIdentity:
    """What the journal records about a WebAssembly agent, however it is executed."""
    return AgentIdentity(kind="wasm", hash=wasm_sha256, config={
        "abi": ABI_VERSION, "capabilities": list(capabilities), "fuel": limits.fuel,
        "memory_bytes": limits.memory_bytes, "max_output_bytes": limits.max_output_bytes})

"""In-process executor for plain Python step functions (fast tests, users' own tests).

Not a sandbox: the function runs in the kernel process with full access. Use WebAssembly
agents for untrusted code.

A step function looks like::

    def agent(state, inbox, host):
        host.log(f"{len(inbox)} messages")
        return {"state": state, "outbox": [("b", {"hi": 1})], "status": "idle"}

``inbox`` is a list of ``{"from", "seq", "step", "payload"}`` dicts; the result is a dict
with ``state`` (required), ``outbox`` (list of ``(to, payload)`` or ``{"to", "payload"}``)
and ``status`` (``"ready"``, ``"idle"`` or ``"done"``), or a ``(state, outbox, status)`` tuple.
An exception becomes a journaled ``fault`` at that step. Other keys in the result, or in an
outbox entry given as a dict, are a ``malformed_output`` fault, as for WebAssembly agents
(docs/abi.md).

With ``timeout_s`` (``run.add_agent`` passes the agent's ``Limits.timeout_s``) a step that
runs longer, not counting time inside host calls, gets a ``timeout`` fault and its thread is
abandoned (see ``workbench._bounded_step``). A step function must not drive its own run:
``run.step()`` and the like raise RunBusy when called from inside a step.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench._bounded_step import BoundedRunner, StepWatch
from workbench._output import MalformedOutput, check_output, malformed_fault
from workbench._types import (
    JSON,
    AgentIdentity,
    Fault,
    HostCalls,
    StepRequest,
    StepResult,
)

StepFunction = Callable[[Any, list[dict[str, JSON]], HostCalls], Any]

_running = threading.local()


def current_agent() -> str | None:
    """The name of the agent whose Python step is running on this thread, else None."""
    agent: str | None = getattr(_running, "agent", None)
    return agent


class PythonAgent:
    """Runs ``fn(state, inbox, host)``: in the calling thread, or with ``timeout_s`` on a
    helper thread bounded by it (``close()`` then releases the idle helper threads)."""

    def __init__(self, fn: StepFunction, *, name: str | None = None,
                 timeout_s: float | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"a Python agent must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", type(fn).__name__)
        self._hash = _code_hash(fn)
        self._runner = BoundedRunner(str(self.name), timeout_s) if timeout_s is not None else None

    def identity(self) -> AgentIdentity:
        return AgentIdentity(kind="python", hash=self._hash, config={"function": self.name})

    @property
    def timeout_s(self) -> float | None:
        """The step's wall-clock bound (None: unbounded)."""
        return self._runner.timeout_s if self._runner is not None else None

    def step(self, request: StepRequest, host: HostCalls) -> StepResult:
        call = self._call(request)
        return call(host) if self._runner is None else self._runner.run(call, host)

    def step_watched(self, request: StepRequest, host: HostCalls, watch: StepWatch) -> None:
        """Run the step in this thread, on ``watch``'s clock: the caller waits on the watch
        (``watch.wait(timeout_s)``) and may abandon the step at its bound; the outcome is
        handed over through the watch, and dropped once abandoned. The scheduler uses this
        so that a bounded step costs no extra thread hand-over."""
        watch.begin()
        watch.run(self._call(request), host)

    def _call(self, request: StepRequest) -> Callable[[HostCalls], StepResult]:
        inbox = [m.to_json() for m in request.inbox]
        for m in inbox:
            del m["to"]
        # copies: an agent that mutates its arguments must not touch host-held data
        state, inbox = copy.deepcopy(request.state), copy.deepcopy(inbox)

        def call(calls: HostCalls) -> StepResult:
            outer, _running.agent = current_agent(), request.agent
            try:
                out = self.fn(state, inbox, calls)
            except Exception as exc:
                return StepResult(state=request.state, fault=Fault(
                    "fault", f"{type(exc).__name__}: {exc}", {"where": _where(exc)}))
            finally:
                _running.agent = outer
            return parse_step_output(out)

        return call

    def close(self) -> None:
        """Release the idle helper threads of a bounded agent. Idempotent; the agent stays
        usable."""
        if self._runner is not None:
            self._runner.close()

    def __repr__(self) -> str:
        return f"<PythonAgent {self.name} {self._hash[:12]}>"


def parse_step_output(out: Any) -> StepResult:
    """Turn a step function's return value into a StepResult, or a ``malformed_output``
    fault worded as the WebAssembly ABI's (docs/abi.md): the same contract for both, except
    that a Python step may return a ``(state, outbox, status)`` tuple and give outbox
    entries as ``(to, payload)`` pairs."""
    try:
        return check_output(out, pairs=True)
    except MalformedOutput as exc:
        return StepResult(state=None, fault=malformed_fault(str(exc)))


def _where(exc: BaseException) -> str:
    """The innermost line of the agent's own code that raised. Frames inside the workbench
    (host calls, this executor) are skipped: the journal must not depend on its source."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not Path(f.filename).resolve().is_relative_to(_PACKAGE)]
    if not frames:
        return ""
    last = frames[-1]
    return f"{last.name} line {last.lineno}"


_PACKAGE = Path(__file__).resolve().parent


def _code_hash(fn: Any) -> str:
    """Hash of the function's source (or bytecode and constants when source is missing)."""
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn)
    try:
        text = inspect.getsource(target).encode()
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        text = repr((code.co_code, code.co_consts)).encode() if code else repr(target).encode()
    return hashlib.sha256(text).hexdigest()

"""The worker process: hosts many agents' compiled modules and runs their steps.

The main thread only reads frames and routes them; every load and every step runs on its own
thread from a bounded pool (``MAX_THREADS``), so an agent blocked in the host ``infer`` call
never holds up the other agents of the same step in this worker (wasmtime releases the GIL
while guest code runs). A host call is forwarded to the kernel as a ``HOST_CALL`` frame
carrying the step's request id, and the step's thread waits for the matching ``HOST_REPLY``
(``log`` returns nothing, so it does not wait: one round trip fewer per line).

Agents with the same module bytes and capabilities share one compiled module. Guest code never
sees this process's state: each step gets a fresh instance (the sandbox's contract). When the
kernel's end of the socket closes, the worker exits at once.

Everything that touches the sandbox is in :func:`_compile` and :func:`_run_step`.
"""

from __future__ import annotations

import importlib
import os
import queue
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from workbench._pysandbox._package import is_package
from workbench._wasm._frames import (
    DEFAULT_MAX_FRAME,
    Frame,
    FrameReader,
    FrameWriter,
    Kind,
    pack,
    unpack,
)
from workbench.errors import CapabilityError, HostCallFailed, InvalidModule

SANDBOX = "workbench._wasm._sandbox"
"""The module that compiles and runs guests (read in the kernel when a worker starts)."""
MAX_THREADS = 4096
"""Steps and loads one worker runs at once; the pool never gives a worker more agents."""


_Key = tuple[str, tuple[str, ...]]
"""(sha256 of the module, capabilities): agents with equal keys share a compiled module."""


def main(sock: socket.socket, cache_dir: str | None, max_frame: int = DEFAULT_MAX_FRAME,
         sandbox: str = SANDBOX) -> None:
    """Entry point of a worker process. Returns (and the process exits) when the kernel's end
    of ``sock`` closes or it sends SHUTDOWN."""
    global _sandbox
    try:
        _sandbox = importlib.import_module(sandbox)
        _Worker(sock, cache_dir, max_frame).serve()
    finally:
        os._exit(0)  # do not wait for step threads parked in host calls


class _Entry:
    """A module compiled once for all the agents that use it (users), or its load error."""

    def __init__(self) -> None:
        self.users = 0
        self.compiled: Any = None
        self.error: dict[str, Any] | None = None
        self._done = threading.Event()

    def finish(self, compiled: Any, error: dict[str, Any] | None) -> None:
        self.compiled, self.error = compiled, error
        self._done.set()

    def wait(self) -> None:
        self._done.wait()


class _Worker:
    def __init__(self, sock: socket.socket, cache_dir: str | None, max_frame: int) -> None:
        self._reader = FrameReader(sock, max_frame)
        self._writer = FrameWriter(sock, max_frame)
        self._cache_dir = cache_dir
        self._agents: dict[int, tuple[_Key, Any]] = {}  # agent id -> its compiled module
        self._modules: dict[_Key, _Entry] = {}
        self._modules_lock = threading.Lock()
        self._replies: dict[int, queue.SimpleQueue[bytes]] = {}
        self._threads = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="wb-agent")

    def serve(self) -> None:
        while (frame := self._reader.read()) is not None:
            if frame.kind is Kind.HOST_REPLY:
                waiting = self._replies.get(frame.rid)
                if waiting is not None:
                    waiting.put(frame.payload)
            elif frame.kind is Kind.STEP:
                self._threads.submit(self._guard, self._step, frame)
            elif frame.kind is Kind.LOAD:
                self._accept_load(frame)
            elif frame.kind is Kind.UNLOAD:
                self._unload(frame)
            elif frame.kind is Kind.PING:
                self._writer.write(Kind.PONG, frame.rid, frame.payload)
            elif frame.kind is Kind.SHUTDOWN:
                return

    def _guard(self, handler: Any, *args: Any) -> None:
        try:
            handler(*args)
        except OSError:
            os._exit(0)  # the kernel is gone

    # -- loading ---------------------------------------------------------------------------

    def _accept_load(self, frame: Frame) -> None:
        """Count the agent as a user of its module now (frames arrive in order), compile on
        a thread. A LOAD without the module's bytes names a module this worker should
        already have; if it has not (any more), the answer is ``missing``."""
        meta, wasm = unpack(frame.payload)
        key = (str(meta["sha256"]), tuple(str(c) for c in meta["capabilities"]))
        with self._modules_lock:
            entry = self._modules.get(key)
            if entry is None and not wasm:
                self._writer.write(Kind.LOADED, frame.rid, pack({"ok": False,
                                                                 "error": "missing"}))
                return
            fresh = entry is None
            if entry is None:
                entry = self._modules[key] = _Entry()
            entry.users += 1
        self._threads.submit(self._guard, self._load, frame.rid, meta, key, entry,
                             wasm if fresh else None)

    def _load(self, rid: int, meta: dict[str, Any], key: _Key, entry: _Entry,
              wasm: bytes | None) -> None:
        if wasm is not None:
            entry.finish(*_compile_or_error(wasm, str(meta["source"]), key[1],
                                            self._cache_dir))
        entry.wait()
        if entry.error is not None:
            self._release(key)
            reply = entry.error
        else:
            self._agents[int(meta["agent"])] = (key, entry.compiled)
            reply = {"ok": True}
        self._writer.write(Kind.LOADED, rid, pack(reply))

    def _release(self, key: _Key) -> None:
        with self._modules_lock:
            entry = self._modules.get(key)
            if entry is not None:
                entry.users -= 1
                if entry.users <= 0:
                    del self._modules[key]

    def _unload(self, frame: Frame) -> None:
        """Forget an agent, and its compiled module once no other agent uses it."""
        loaded = self._agents.pop(int(unpack(frame.payload)[0]["agent"]), None)
        if loaded is not None:
            self._release(loaded[0])

    # -- stepping ----------------------------------------------------------------------------

    def _step(self, frame: Frame) -> None:
        meta, input_json = unpack(frame.payload)
        loaded = self._agents.get(int(meta["agent"]))
        host = _ForwardingHost(self, frame.rid)
        self._replies[frame.rid] = host.inbox
        try:
            if loaded is None:
                raise LookupError("the agent is not loaded in this worker")
            kind, meta, output = _run_step(loaded[1], input_json, host, meta)
        except HostCallFailed as exc:  # the kernel re-raises the host's own exception
            kind, meta, output = Kind.FAULT, {"kind": "fault", "detail": str(exc)}, b""
        except Exception as exc:  # reported as the scheduler reports a raising executor
            detail = f"{type(exc).__name__}: {exc}"
            kind, meta, output = Kind.FAULT, {"kind": "fault", "detail": detail}, b""
        finally:
            self._replies.pop(frame.rid, None)
        self._writer.write(kind, frame.rid, pack(meta, output))

    def notify_host(self, rid: int, fn: str, arg: bytes) -> None:
        """A host call without a result (``log``): sent, not waited for. Frames keep their
        order, and a failure in the kernel is re-raised there when the step ends."""
        self._writer.write(Kind.HOST_CALL, rid, pack({"fn": fn, "reply": False}, arg))

    def call_host(self, rid: int, inbox: queue.SimpleQueue[bytes], fn: str,
                  arg: bytes) -> bytes:
        self._writer.write(Kind.HOST_CALL, rid, pack({"fn": fn}, arg))
        meta, blob = unpack(inbox.get())
        if not meta.get("ok"):
            raise HostCallFailed(f"host.{fn} failed in the kernel: {meta.get('error')}")
        return blob


class _ForwardingHost:
    """The sandbox's bytes-level GuestHost for one step: every call goes to the kernel."""

    def __init__(self, worker: _Worker, rid: int) -> None:
        self._worker = worker
        self._rid = rid
        self.inbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()

    def _call(self, fn: str, arg: bytes = b"") -> bytes:
        return self._worker.call_host(self._rid, self.inbox, fn, arg)

    def infer(self, request: bytes) -> bytes:
        return self._call("infer", request)

    def log(self, text: bytes) -> None:
        self._worker.notify_host(self._rid, "log", text)

    def random(self) -> int:
        return int.from_bytes(self._call("random"), "little")

    def now(self) -> int:
        return int.from_bytes(self._call("now"), "little")


# -- the sandbox, behind two functions ---------------------------------------------------------

_sandbox: Any = None  # the SANDBOX module, imported by main()


def _compile_or_error(wasm: bytes, source: str, capabilities: tuple[str, ...],
                      cache_dir: str | None) -> tuple[Any, dict[str, Any] | None]:
    """(compiled module, None), or (None, the LOADED reply that says why not)."""
    try:
        return _compile(wasm, source, capabilities, cache_dir), None
    except CapabilityError as exc:
        return None, {"ok": False, "error": "capability", "name": exc.name,
                      "granted": list(exc.granted), "via": exc.via, "reason": exc.reason}
    except InvalidModule as exc:
        return None, {"ok": False, "error": "invalid", "reason": exc.reason}
    except Exception as exc:
        return None, {"ok": False, "error": "invalid",
                      "reason": f"{type(exc).__name__}: {exc}"}


def _compile(wasm: bytes, source: str, capabilities: tuple[str, ...],
             cache_dir: str | None) -> Any:
    """Compile (or load from the disk cache) one module, or bind a sandboxed Python
    agent's package to its runtime component. Raises InvalidModule."""
    if is_package(wasm):
        from workbench._pysandbox._sandbox import compile_agent

        return compile_agent(wasm, source=source, capabilities=capabilities)
    return _sandbox.compile_module(wasm, source=source, capabilities=capabilities,
                                   cache_dir=None if cache_dir is None else Path(cache_dir))


def _run_step(agent: Any, input_json: bytes, host: _ForwardingHost,
              limits: dict[str, Any]) -> tuple[Kind, dict[str, Any], bytes]:
    """Run one step: (RESULT, outcome fields, output) or (FAULT, fault as JSON, b"").
    Raises HostCallFailed if a host call failed in the kernel."""
    outcome = _runner(agent)(
        agent, input_json, host, fuel=int(limits["fuel"]),
        memory_bytes=int(limits["memory_bytes"]), timeout_s=_seconds(limits["timeout_s"]),
        max_output_bytes=int(limits["max_output_bytes"]))
    if outcome.fault is not None:
        return Kind.FAULT, outcome.fault.to_json(), b""
    fields = {"fuel_consumed": outcome.fuel_consumed, "memory_size": outcome.memory_size,
              "memory_at_limit": outcome.memory_at_limit, "host_calls": outcome.host_calls}
    return Kind.RESULT, fields, outcome.output or b""


def _runner(agent: Any) -> Any:
    """The ``run_step`` for what :func:`_compile` returned: a sandboxed Python agent's is in
    its own module (imported by then, since it compiled the agent)."""
    python = sys.modules.get("workbench._pysandbox._sandbox")
    if python is not None and isinstance(agent, python.CompiledPythonAgent):
        return python.run_step
    return _sandbox.run_step


def _seconds(value: Any) -> float | None:
    """The step's wall-clock backstop from its STEP meta; None runs without one (replay)."""
    return None if value is None else float(value)

"""Run one step of a sandboxed Python agent: the runtime component under wasmtime.

The twin of ``workbench._wasm._sandbox`` for the component model. One engine per process
(the ABI v1 engine's settings, with the component model on), one compiled runtime component
per process (loaded from the cache file), one linker per set of capabilities. Every step gets
a fresh store and instance of the runtime (a trap poisons a component instance, and state is
host-held anyway), with the agent's fuel, memory limit and wall-clock backstop; the host
functions are those of ABI v1 (``host.infer``/``log``/``random``/``now``), counted against
the same per-step bounds. Guest faults come back as :class:`StepOutcome` faults, never as
exceptions; what ``host`` raises is re-raised once the guest has stopped.
"""

from __future__ import annotations

import ast
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import component

from workbench._pysandbox._package import AgentPackage, read_package
from workbench._types import HOST_CALLS, Fault
from workbench._wasm import _sandbox as abi_sandbox
from workbench._wasm._abi import (
    MAX_HOSTCALL_BYTES,
    GuestHost,
    StepOutcome,
    fault,
    limit_fault,
    output_too_large,
)
from workbench._wasm._imports import GuestStep, Stop, one_line
from workbench.errors import ConfigError, InvalidModule

__all__ = ["HOST_INTERFACE", "CompiledPythonAgent", "compile_agent", "compile_component",
           "engine_fingerprint", "run_step"]

HOST_INTERFACE = "workbench:agent/host@1.0.0"
_SETTINGS: dict[str, Any] = {**abi_sandbox._ENGINE_SETTINGS, "wasm_component_model": True}
_MAX_CORE_INSTANCES = 64
"""Core instances, tables and memories one runtime instance may create (it needs fewer:
CPython, libc, the bindings and their adapters). ``memory_bytes`` bounds each memory."""


def engine_fingerprint() -> str:
    settings = ";".join(f"{k}={v}" for k, v in sorted(_SETTINGS.items()))
    return f"wasmtime={abi_sandbox.engine_fingerprint().split(';')[0]};component;{settings}"


# --- the process's engine, runtime and linkers --------------------------------------------------


@dataclass
class _Process:
    pid: int
    engine: wasmtime.Engine
    ticker: Any
    runtimes: dict[str, component.Component]
    linkers: dict[tuple[str, ...], component.Linker]


_lock = threading.Lock()
_process: _Process | None = None


def _state() -> _Process:
    """This process's engine (a forked child builds its own), compiling in parallel only in
    the process the ABI v1 sandbox allows to (wasmtime's pool does not survive ``fork``)."""
    global _process
    parallel = abi_sandbox._state().pid == abi_sandbox._parallel_pid
    with _lock:
        if _process is None or _process.pid != os.getpid():
            config = wasmtime.Config()
            for name, value in _SETTINGS.items():
                setattr(config, name, value)
            config.parallel_compilation = parallel
            engine = wasmtime.Engine(config)
            _process = _Process(os.getpid(), engine, abi_sandbox._Ticker(engine), {}, {})
        return _process


def compile_component(wasm: bytes) -> bytes:
    """Compile the runtime component; its serialized form (for the cache file)."""
    try:
        return bytes(component.Component(_state().engine, wasm).serialize())
    except wasmtime.WasmtimeError as exc:
        raise ConfigError(f"wasmtime could not compile the Python-agent runtime: "
                          f"{one_line(str(exc))}") from None


def _runtime(path: str, source: str) -> component.Component:
    state = _state()
    with _lock:
        loaded = state.runtimes.get(path)
        if loaded is None:
            try:
                loaded = component.Component.deserialize_file(state.engine, path)
            except wasmtime.WasmtimeError as exc:
                raise InvalidModule(source, "the Python-agent runtime at "
                                    f"{path} does not load: {one_line(str(exc))}") from None
            state.runtimes[path] = loaded
        return loaded


def _linker(capabilities: tuple[str, ...]) -> component.Linker:
    state = _state()
    with _lock:
        linker = state.linkers.get(capabilities)
        if linker is None:
            linker = component.Linker(state.engine)
            with linker.root() as root, root.add_instance(HOST_INTERFACE) as host:
                for name in HOST_CALLS:
                    host.add_func(name, _host_function(name, name in capabilities))
            state.linkers[capabilities] = linker
        return linker


# --- compiling an agent -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CompiledPythonAgent:
    """An agent package bound to the loaded runtime. Lives in the process that made it."""

    source: str
    package: AgentPackage
    capabilities: tuple[str, ...]
    guest_json: str
    code: str  # the package compiled by the runtime's prepare, marshalled (latin-1)
    runtime: component.Component
    linker: component.Linker


PREPARE_FUEL = 10_000_000_000
"""Fuel for compiling one agent's source in the runtime (about 8,000 a byte of source)."""
PREPARE_MEMORY_BYTES = 256 * 1024 * 1024


def compile_agent(data: bytes, *, source: str, capabilities: tuple[str, ...],
                  runtime: str | None = None) -> CompiledPythonAgent:
    """Bind a package (see ``_package``) to the runtime at ``runtime`` (or the path the
    package carries) and compile its source there, once (every step then runs the same
    code, so its fuel does not depend on what ran before). Raises InvalidModule for a
    damaged package, a missing runtime or source that does not compile."""
    package = read_package(data, source)
    path = runtime or package.runtime
    if path is None or not Path(path).is_file():
        raise InvalidModule(source, f"the Python-agent runtime {path!r} is missing")
    _check_syntax(package, source)
    granted = tuple(c for c in HOST_CALLS if c in capabilities)
    guest_json = package.guest_json(granted)
    loaded, linker = _runtime(path, source), _linker(granted)
    return CompiledPythonAgent(source, package, granted, guest_json,
                               _prepare(loaded, linker, guest_json, source), loaded, linker)


def _check_syntax(package: AgentPackage, source: str) -> None:
    """InvalidModule for a piece this Python cannot parse. Checked here because the guest's
    parser, reporting a syntax error, reaches for the source file (a system call the sandbox
    does not have) and traps instead of raising."""
    for piece in package.pieces:
        try:
            ast.parse("\n" * (piece.line - 1) + piece.code, "<agent>")
        except SyntaxError as exc:
            raise InvalidModule(source, "its source does not compile in the sandbox: "
                                f"SyntaxError: {exc.msg} (line {exc.lineno})") from None


def _prepare(runtime: component.Component, linker: component.Linker, guest_json: str,
             source: str) -> str:
    store = wasmtime.Store(_state().engine)
    store.set_fuel(PREPARE_FUEL)
    store.set_epoch_deadline(1 << 48)
    store.set_limits(memory_size=PREPARE_MEMORY_BYTES, instances=_MAX_CORE_INSTANCES,
                     tables=_MAX_CORE_INSTANCES, memories=_MAX_CORE_INSTANCES)
    try:
        func = linker.instantiate(store, runtime).get_func(store, "prepare")
        assert func is not None, "the runtime exports prepare"
        result = func(store, guest_json)
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(source, "its source could not be compiled in the sandbox: "
                            f"{one_line(str(exc).split('Caused by:')[-1])}") from None
    ok, value = _outcome(result)
    if not ok:
        detail = json.loads(str(value)).get("detail", "")
        raise InvalidModule(source, f"its source does not compile in the sandbox: {detail}")
    return bytes(value).decode("latin-1")


def _outcome(result: Any) -> tuple[bool, Any]:
    """(ok, value) of a WIT ``result``: wasmtime-py gives a Variant when both sides are of
    one Python type (``result<string, string>``), else the value itself."""
    if hasattr(result, "tag"):
        return result.tag == "ok", result.payload
    return isinstance(result, bytes | bytearray), result


# --- host functions -----------------------------------------------------------------------------

_current = threading.local()


def _host_function(name: str, granted: bool) -> Callable[..., Any]:
    """A host function for the component linker. Never raises into wasmtime-py (see
    ``workbench._wasm._imports``): a failure ends the step by emptying its fuel."""
    impl = _IMPLS[name]
    default = "" if name == "infer" else (None if name == "log" else 0)

    def host_function(store: Any, *args: Any) -> Any:
        step: GuestStep | None = getattr(_current, "step", None)
        if step is None or step.halted:
            return default
        try:
            step.count_calls(1)
            if not granted:
                raise Stop(fault("trap", f"the agent called host.{name}, which it was not "
                                 "granted", code="capability", message=name, at=""))
            with step.on_host_clock():
                return impl(step, *args)
        except Stop as stop:
            step.stop(stop.fault)
        except BaseException as exc:  # the host failed: not the guest's fault
            step.fail_host(exc)
        return default

    return host_function


def _payload(step: GuestStep, text: str, what: str, *, log: bool = False) -> bytes:
    data = text.encode("utf-8", errors="replace")
    if len(data) > MAX_HOSTCALL_BYTES:
        raise Stop(limit_fault(
            "max_hostcall_bytes", len(data), MAX_HOSTCALL_BYTES,
            f"{what} is {len(data)} bytes, over the host-call limit of {MAX_HOSTCALL_BYTES}"))
    if log:
        step.count_log(len(data))
    step.count_bytes(len(data))
    return data


def _infer(step: GuestStep, request: str) -> str:
    step.count_infer()
    result = bytes(step.host.infer(_payload(step, request, "the host.infer request")))
    if len(result) > MAX_HOSTCALL_BYTES:
        result = b'{"error":"the inference result is over the host-call limit of 1 MiB"}'
    step.count_bytes(len(result))
    return result.decode("utf-8")


def _log(step: GuestStep, text: str) -> None:
    step.host.log(_payload(step, text, "the host.log line", log=True))


def _random(step: GuestStep) -> int:
    return int(step.host.random()) & ((1 << 64) - 1)


def _now(step: GuestStep) -> int:
    return int(step.host.now()) & ((1 << 64) - 1)


_IMPLS: dict[str, Callable[..., Any]] = {"infer": _infer, "log": _log, "random": _random,
                                         "now": _now}


# --- one step ---------------------------------------------------------------------------------


def run_step(agent: CompiledPythonAgent, input_json: bytes, host: GuestHost, *, fuel: int,
             memory_bytes: int, timeout_s: float | None,
             max_output_bytes: int) -> StepOutcome:
    """Run one step in a fresh instance of the runtime; as ``_wasm._sandbox.run_step``."""
    if not (0 < fuel < 1 << 63 and memory_bytes > 0 and max_output_bytes >= 0
            and (timeout_s is None or timeout_s > 0)):
        raise ValueError(f"bad limits: fuel={fuel}, memory_bytes={memory_bytes}, "
                         f"timeout_s={timeout_s}, max_output_bytes={max_output_bytes}")
    state = _state()
    store = wasmtime.Store(state.engine)
    step = GuestStep(store, host, fuel=fuel, timeout_s=timeout_s, tick_s=abi_sandbox.TICK_S)
    state.ticker.acquire()
    previous, _current.step = getattr(_current, "step", None), step
    try:
        store.set_fuel(fuel)
        store.set_limits(memory_size=memory_bytes, instances=_MAX_CORE_INSTANCES,
                         tables=_MAX_CORE_INSTANCES, memories=_MAX_CORE_INSTANCES,
                         table_elements=abi_sandbox.MAX_TABLE_ELEMENTS)
        step.arm_deadline()
        output, f = _execute(agent, step, input_json, memory_bytes)
    finally:
        _current.step = previous
        state.ticker.release()
    if step.host_error is not None:
        raise step.host_error
    if output is not None and len(output) > max_output_bytes:
        size = len(output)
        output, f = None, output_too_large(size, max_output_bytes)
    consumed = step.stopped_fuel if step.stopped is not None else step.consumed()
    return StepOutcome(output=output, fault=f, fuel_consumed=consumed,
                       host_calls=step.calls)


def _execute(agent: CompiledPythonAgent, step: GuestStep, input_json: bytes,
             memory_bytes: int) -> tuple[bytes | None, Fault | None]:
    store = step.store
    try:
        instance = agent.linker.instantiate(store, agent.runtime)
        func = instance.get_func(store, "step")
        assert func is not None, "the runtime exports step"
        result = func(store, agent.guest_json, agent.code, input_json.decode("utf-8"))
    except wasmtime.WasmtimeError as exc:
        return None, step.stopped or _error_fault(str(exc), step, memory_bytes)
    if step.halted:
        return None, step.stopped
    return _result(result)


def _result(result: Any) -> tuple[bytes | None, Fault | None]:
    """The runtime's ``result<string, string>``: output bytes, or its fault."""
    ok, value = _outcome(result)
    if ok:
        return str(value).encode("utf-8"), None
    raw = json.loads(str(value))
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    return None, Fault(str(raw.get("kind", "fault")), str(raw.get("detail", "")), data)


_FRAME = re.compile(r"(libc|libpython[0-9.]*)\.so!([A-Za-z0-9_]+)")


def _system_call(message: str) -> tuple[str, str] | None:
    """(the libc function the interpreter called, the interpreter function that called it)
    from a trap's backtrace (innermost frame first), when a WASI stub trapped under libc."""
    libc = None
    for library, name in _FRAME.findall(message):
        if library == "libc":
            libc = name
        elif libc is not None:
            return libc, name
    return None if libc is None else (libc, "")


def _error_fault(message: str, step: GuestStep, memory_bytes: int) -> Fault:
    """Name a trap from its message (the component API gives no trap code)."""
    cause = one_line(message.split("Caused by:")[-1])
    if "all fuel consumed" in message:
        return fault("out_of_fuel", f"the step used its whole fuel budget of {step.fuel}; "
                     "raise fuel=... or do less per step", fuel=step.fuel,
                     consumed=step.consumed(), at="")
    if "interrupt" in cause:
        return fault("timeout", f"the wall-clock backstop of {step.timeout_s} s stopped the "
                     "step", timeout_s=step.timeout_s)
    if "call stack exhausted" in message:
        return fault("trap", "the guest trapped (stack_overflow): call stack exhausted",
                     code="stack_overflow", message=cause, at="")
    if "unreachable" in cause:
        call = _system_call(message)
        if call is not None:
            libc, python = call
            return fault("trap", f"the agent reached the system call {libc} (from {python}), "
                         "which the sandbox does not provide (no files, network, clock, "
                         "environment or processes)", code="sandbox_denied", message=libc,
                         at=python)
    if "memory" in cause and ("limit" in cause or "grow" in cause):
        return fault("memory_limit", f"the agent reached its memory limit of {memory_bytes} "
                     f"bytes: {cause}", memory_bytes=memory_bytes, memory_size=0,
                     cause=cause)
    return fault("trap", f"the guest trapped: {cause}", code="error", message=cause, at="")

"""The wasmtime sandbox: compile an agent module, run one step of it. ABI v1 (docs/abi.md).

Process-local and picklable-free by design: a worker process calls :func:`compile_module`
with wasm bytes, keeps the :class:`CompiledAgent`, and calls :func:`run_step` with input bytes
and a bytes-level :class:`~workbench._wasm._abi.GuestHost`; what comes back is a plain
:class:`~workbench._wasm._abi.StepOutcome`. Guest faults are outcomes, never exceptions.

One engine per process (recreated after ``fork``), configured for determinism: fuel metering,
NaN canonicalisation, no relaxed SIMD, threads, shared memory, memory64, GC or exceptions.
Epoch interruption is only a wall-clock backstop; a ticker thread advances the epoch while
steps run. Every step gets a fresh store and instance, so ``run_step`` may be called from
several threads at once (wasmtime releases the GIL while guest code runs). Host functions
find their step through a thread-local, and they never raise into wasmtime: a host-side
stop sets the store's fuel to zero and records why.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import wasmtime

from workbench._types import HOST_CALLS, Fault
from workbench._wasm._abi import (
    MAX_HOST_CALLS,
    MAX_HOSTCALL_BYTES,
    GuestHost,
    StepOutcome,
    fault,
)
from workbench._wasm._cache import ModuleCache, cache_key
from workbench.errors import CapabilityError, ConfigError, InvalidModule

__all__ = [
    "MAX_MODULE_BYTES",
    "PAGE_BYTES",
    "TICK_S",
    "CompiledAgent",
    "compile_module",
    "engine_fingerprint",
    "run_step",
]

PAGE_BYTES = 65536
MAX_MODULE_BYTES = 256 * 1024 * 1024
"""Largest module compile_module accepts."""
TICK_S = 0.005
"""Epoch tick of the wall-clock backstop; a timeout fires within about one tick of its time."""
MAX_RANDOM_GET_BYTES = 256
"""Largest WASI random_get buffer (as getentropy); larger requests get EINVAL."""

_ENGINE_SETTINGS: dict[str, Any] = {
    "consume_fuel": True,
    "epoch_interruption": True,
    "cranelift_nan_canonicalization": True,
    "wasm_relaxed_simd": False,
    "wasm_relaxed_simd_deterministic": True,
    "wasm_threads": False,
    "shared_memory": False,
    "wasm_memory64": False,
    "wasm_gc": False,
    "wasm_function_references": False,
    "wasm_exceptions": False,
    "wasm_stack_switching": False,
    "wasm_component_model": False,
    "wasm_wide_arithmetic": False,
    "wasm_custom_page_sizes": False,
    "gc_support": False,
    "max_wasm_stack": 512 * 1024,
    "cranelift_opt_level": "speed",
}
_WASI = "wasi_snapshot_preview1"
_T = TypeVar("_T")
_U64 = (1 << 64) - 1
_ERRNO_FAULT, _ERRNO_INVAL, _ERRNO_NOTSUP = 21, 28, 58


def engine_fingerprint() -> str:
    """What compiled code depends on: wasmtime's version and this module's engine settings."""
    settings = ";".join(f"{k}={v}" for k, v in sorted(_ENGINE_SETTINGS.items()))
    return f"wasmtime={importlib.metadata.version('wasmtime')};abi=1;{settings}"


# --- the process's engine and its epoch ticker ------------------------------------------------


class _Ticker:
    """Advances the engine's epoch every TICK_S while at least one step holds it."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        self._cond = threading.Condition()
        self._active = 0
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        with self._cond:
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="wasm-epoch",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def release(self) -> None:
        with self._cond:
            self._active -= 1

    def _loop(self) -> None:
        """Tick on a fixed schedule: a late wake-up catches up instead of drifting."""
        next_tick = time.monotonic()
        while True:
            with self._cond:
                if self._active == 0:
                    self._cond.wait_for(lambda: self._active > 0)
                    next_tick = time.monotonic()
            next_tick += TICK_S
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._engine.increment_epoch()


@dataclass(frozen=True)
class _EngineState:
    pid: int
    engine: wasmtime.Engine
    ticker: _Ticker


_engine_lock = threading.Lock()
_engine_state: _EngineState | None = None


def _state() -> _EngineState:
    """The engine of this process (a forked child builds its own: threads do not fork)."""
    global _engine_state
    with _engine_lock:
        if _engine_state is None or _engine_state.pid != os.getpid():
            config = wasmtime.Config()
            for name, value in _ENGINE_SETTINGS.items():
                setattr(config, name, value)
            engine = wasmtime.Engine(config)
            _engine_state = _EngineState(os.getpid(), engine, _Ticker(engine))
        return _engine_state


# --- compiling and checking a module ------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CompiledAgent:
    """A compiled, checked and linked agent module. Lives in the process that compiled it."""

    source: str
    sha256: str
    capabilities: tuple[str, ...]
    module: wasmtime.Module
    pre: wasmtime.InstancePre
    has_initialize: bool
    uses_wasi: bool
    min_memory_bytes: int


_Sig = tuple[tuple[str, ...], tuple[str, ...]]
_HOST_SIGS: dict[str, _Sig] = {
    "infer": (("i32", "i32"), ("i64",)),
    "log": (("i32", "i32"), ()),
    "random": ((), ("i64",)),
    "now": ((), ("i64",)),
}
_EXPORT_SIGS: dict[str, _Sig] = {
    "alloc": (("i32",), ("i32",)),
    "step": (("i32", "i32"), ("i64",)),
    "_initialize": ((), ()),
}
_WASI_SHADOWS: dict[str, tuple[str | None, _Sig]] = {
    "random_get": ("random", (("i32", "i32"), ("i32",))),
    "clock_time_get": ("now", (("i32", "i64", "i32"), ("i32",))),
    "clock_res_get": ("now", (("i32", "i32"), ("i32",))),
    "poll_oneoff": (None, (("i32", "i32", "i32", "i32"), ("i32",))),
}


def compile_module(wasm: bytes, *, source: str, capabilities: tuple[str, ...],
                   cache_dir: Path | str | None = None) -> CompiledAgent:
    """Validate, compile (or load from ``cache_dir``), check and link an agent module.

    Raises ConfigError for an unknown capability name; CapabilityError when the module
    imports a host function (or WASI clock/random) it is not granted; InvalidModule when the
    bytes are not a valid WebAssembly binary, use a disabled feature, miss or mistype an ABI
    export, or import anything ABI v1 does not provide. ``source`` names the module in
    messages.
    """
    granted = _check_capabilities(capabilities)
    if len(wasm) > MAX_MODULE_BYTES:
        raise InvalidModule(source, f"it is {len(wasm)} bytes, over {MAX_MODULE_BYTES}")
    if not bytes(wasm[:4]) == b"\0asm":
        raise InvalidModule(source, "it is not a WebAssembly binary (no \\0asm header)")
    wasm = bytes(wasm)
    sha = hashlib.sha256(wasm).hexdigest()
    module = _compile(wasm, sha, source, cache_dir)
    min_memory = _check_exports(module, source)
    uses_wasi = _check_imports(module, source, granted)
    pre = _link(module, source, granted, uses_wasi)
    has_init = any(e.name == "_initialize" for e in module.exports)
    return CompiledAgent(source, sha, granted, module, pre, has_init, uses_wasi, min_memory)


def _check_capabilities(capabilities: tuple[str, ...]) -> tuple[str, ...]:
    unknown = sorted(set(capabilities) - set(HOST_CALLS))
    if unknown:
        raise ConfigError(f"unknown capabilities {unknown}; ABI v1 has {list(HOST_CALLS)}")
    return tuple(c for c in HOST_CALLS if c in capabilities)


def _compile(wasm: bytes, sha: str, source: str,
             cache_dir: Path | str | None) -> wasmtime.Module:
    engine = _state().engine

    def build() -> wasmtime.Module:
        wasmtime.Module.validate(engine, wasm)
        return wasmtime.Module(engine, wasm)

    try:
        if cache_dir is None:
            return build()
        cache = ModuleCache(cache_dir)
        return cache.load_or_compile(engine, cache_key(sha, engine_fingerprint()), build)
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(source, f"it does not validate: {_one_line(str(exc))}") from None


def _signature(ty: Any) -> _Sig | None:
    if not isinstance(ty, wasmtime.FuncType):
        return None
    return tuple(str(p) for p in ty.params), tuple(str(r) for r in ty.results)


def _show(sig: _Sig) -> str:
    return f"({', '.join(sig[0])}) -> ({', '.join(sig[1])})"


def _check_exports(module: wasmtime.Module, source: str) -> int:
    """Check the ABI exports; returns the memory's initial size in bytes."""
    exports = {e.name: e.type for e in module.exports}
    memory = exports.get("memory")
    if not isinstance(memory, wasmtime.MemoryType):
        raise InvalidModule(source, "it does not export a memory named 'memory'")
    for name, want in _EXPORT_SIGS.items():
        if name not in exports:
            if name == "_initialize":
                continue
            raise InvalidModule(source, f"it does not export the function {name!r} "
                                f"{_show(want)}")
        got = _signature(exports[name])
        if got != want:
            shown = _show(got) if got else "not a function"
            raise InvalidModule(source, f"its export {name!r} is {shown}, ABI v1 needs "
                                f"{_show(want)}")
    return int(memory.limits.min) * PAGE_BYTES


def _check_imports(module: wasmtime.Module, source: str, granted: tuple[str, ...]) -> bool:
    """Check every import up front for a clear message; returns whether WASI is imported."""
    uses_wasi = False
    for imp in module.imports:
        where = f"{imp.module}.{imp.name}"
        sig = _signature(imp.type)
        if sig is None:
            raise InvalidModule(source, f"it imports {where}, which is not a function; "
                                "ABI v1 imports only host functions")
        if imp.module == "host":
            _check_host_import(source, imp.name or "", sig, granted)
        elif imp.module == _WASI:
            uses_wasi = True
            _check_wasi_import(source, imp.name or "", sig, granted)
        else:
            raise InvalidModule(source, f"it imports {where}; ABI v1 provides only the "
                                f"modules 'host' ({', '.join(HOST_CALLS)}) and '{_WASI}'")
    return uses_wasi


def _check_host_import(source: str, name: str, sig: _Sig, granted: tuple[str, ...]) -> None:
    want = _HOST_SIGS.get(name)
    if want is None:
        raise InvalidModule(source, f"it imports host.{name}, which ABI v1 does not have "
                            f"(host functions: {', '.join(HOST_CALLS)})")
    if name not in granted:
        raise CapabilityError(source, name, granted)
    if sig != want:
        raise InvalidModule(source, f"it imports host.{name} as {_show(sig)}, ABI v1 "
                            f"defines {_show(want)}")


def _check_wasi_import(source: str, name: str, sig: _Sig, granted: tuple[str, ...]) -> None:
    shadow = _WASI_SHADOWS.get(name)
    if shadow is None:
        return  # wasmtime's own WASI checks the rest when linking
    capability, want = shadow
    if capability is not None and capability not in granted:
        raise CapabilityError(source, capability, granted, via=f"{_WASI}.{name}")
    if sig != want:
        raise InvalidModule(source, f"it imports {_WASI}.{name} as {_show(sig)}, WASI "
                            f"preview 1 defines {_show(want)}")


def _link(module: wasmtime.Module, source: str, granted: tuple[str, ...],
          uses_wasi: bool) -> wasmtime.InstancePre:
    """A linker with only the granted host functions (and sandboxed WASI when imported)."""
    engine = _state().engine
    linker = wasmtime.Linker(engine)
    for name in granted:
        params, results = _HOST_SIGS[name]
        linker.define_func("host", name, _functype(params, results), _HOST_FUNCS[name])
    if uses_wasi:
        linker.allow_shadowing = True
        linker.define_wasi()
        for name, (capability, (params, results)) in _WASI_SHADOWS.items():
            if capability is None or capability in granted:
                linker.define_func(_WASI, name, _functype(params, results), _WASI_FUNCS[name])
    try:
        return linker.instantiate_pre(module)
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(source, f"it cannot be linked: {_one_line(str(exc))}") from None


def _functype(params: tuple[str, ...], results: tuple[str, ...]) -> wasmtime.FuncType:
    kinds = {"i32": wasmtime.ValType.i32, "i64": wasmtime.ValType.i64}
    return wasmtime.FuncType([kinds[p]() for p in params], [kinds[r]() for r in results])


def _one_line(text: str, limit: int = 400) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# --- one step ------------------------------------------------------------------------------------


class _Stop(Exception):
    """Internal: a host function ends the step with this fault."""

    def __init__(self, f: Fault) -> None:
        super().__init__(f.detail)
        self.fault = f


class _Step:
    """The state of one running step, reachable from host functions via a thread-local."""

    def __init__(self, agent: CompiledAgent, store: wasmtime.Store, host: GuestHost,
                 fuel: int, timeout_s: float) -> None:
        self.agent = agent
        self.store = store
        self.host = host
        self.fuel = fuel
        self.timeout_s = timeout_s
        self.started = time.monotonic()
        self.host_seconds = 0.0
        self.calls = 0
        self.memory: wasmtime.Memory | None = None
        self.alloc: wasmtime.Func | None = None
        self.stopped: Fault | None = None
        self.stopped_fuel = 0
        self.host_error: BaseException | None = None

    # -- stopping the guest from inside a host call

    def stop(self, f: Fault) -> None:
        """End the step with ``f``: the guest traps out of fuel at its next fuel check."""
        if self.stopped is None and self.host_error is None:
            self.stopped = f
            self.stopped_fuel = self.consumed()
        self.store.set_fuel(0)

    def fail_host(self, exc: BaseException) -> None:
        if self.stopped is None and self.host_error is None:
            self.host_error = exc
        self.store.set_fuel(0)

    @property
    def halted(self) -> bool:
        return self.stopped is not None or self.host_error is not None

    def consumed(self) -> int:
        return self.fuel - self.store.get_fuel()

    # -- the wall-clock backstop

    def arm_deadline(self) -> None:
        """Deadline = the guest time left; time spent in host calls does not count."""
        guest_seconds = time.monotonic() - self.started - self.host_seconds
        left = max(0.0, self.timeout_s - guest_seconds)
        self.store.set_epoch_deadline(math.ceil(left / TICK_S) + 1)

    def call_host(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Call the host; the time it takes does not count against the guest's deadline,
        which is re-armed before the guest runs again (even inside this host function)."""
        started = time.monotonic()
        try:
            return fn(*args)
        finally:
            self.host_seconds += time.monotonic() - started
            self.arm_deadline()

    # -- guest memory

    def mem(self) -> wasmtime.Memory:
        if self.memory is None:
            raise _Stop(fault("trap", "a host function was called from the module's start "
                              "function; call host functions from _initialize or step",
                              code="host_call_in_start"))
        return self.memory

    def memory_size(self) -> int:
        return self.memory.data_len(self.store) if self.memory is not None else 0

    def read(self, ptr: int, length: int, what: str) -> bytes:
        if length > MAX_HOSTCALL_BYTES:
            raise _Stop(fault("limit", f"{what} is {length} bytes, over the host-call limit "
                              f"of {MAX_HOSTCALL_BYTES}", limit="max_hostcall_bytes",
                              size=length, max=MAX_HOSTCALL_BYTES))
        memory = self.mem()
        size = memory.data_len(self.store)
        if ptr + length > size:
            raise _Stop(_out_of_bounds(what, ptr, length, size))
        return bytes(memory.read(self.store, ptr, ptr + length))

    def write(self, ptr: int, data: bytes) -> bool:
        """Copy ``data`` to ``ptr``; False (nothing written) when it does not fit."""
        memory = self.mem()
        if ptr + len(data) > memory.data_len(self.store):
            return False
        if data:
            memory.write(self.store, data, ptr)
        return True

    def deliver(self, data: bytes, what: str) -> int:
        """Copy ``data`` into a buffer from the guest's alloc; 0 when alloc returned 0."""
        self.mem()  # raises when called before instantiation finished
        assert self.alloc is not None  # looked up together with memory
        ptr = int(self.alloc(self.store, len(data))) & 0xFFFFFFFF
        if ptr == 0:
            return 0
        if not self.write(ptr, data):
            raise _Stop(_out_of_bounds(f"the buffer alloc returned for {what}", ptr,
                                       len(data), self.memory_size()))
        return ptr


def _out_of_bounds(what: str, ptr: int, length: int, size: int) -> Fault:
    return fault("trap", f"{what} at {ptr:#x}+{length} lies outside the guest's memory of "
                 f"{size} bytes", code="memory_out_of_bounds")


_current = threading.local()


def _host_function(default: int | None) -> Callable[[Callable[..., int | None]],
                                                    Callable[..., int | None]]:
    """Wrap a host function: find its step, count the call, turn every failure into a stop.

    Nothing may raise into wasmtime-py: it keeps the last host exception in a process-wide
    global, which concurrent steps would race on.
    """

    def wrap(impl: Callable[..., int | None]) -> Callable[..., int | None]:
        def host_function(*args: int) -> int | None:
            step: _Step | None = getattr(_current, "step", None)
            if step is None or step.halted:
                return default
            try:
                step.calls += 1
                if step.calls > MAX_HOST_CALLS:
                    raise _Stop(fault("limit", f"more than {MAX_HOST_CALLS} host calls in "
                                      "one step", limit="max_host_calls",
                                      size=step.calls, max=MAX_HOST_CALLS))
                return impl(step, *args)
            except _Stop as stop:
                step.stop(stop.fault)
            except wasmtime.Trap as trap:  # the guest's alloc trapped inside this call
                step.stop(_trap_fault(trap, step))
            except BaseException as exc:  # the host failed: not the guest's fault
                step.fail_host(exc)
            return default

        host_function.__name__ = impl.__name__
        return host_function

    return wrap


def _to_i64(value: int) -> int:
    value &= _U64
    return value - (1 << 64) if value >= 1 << 63 else value


def _pack(ptr: int, length: int) -> int:
    return _to_i64((ptr << 32) | length)


@_host_function(default=0)
def _host_infer(step: _Step, ptr: int, length: int) -> int:
    request = step.read(ptr & 0xFFFFFFFF, length & 0xFFFFFFFF, "the host.infer request")
    result = bytes(step.call_host(step.host.infer, request))
    if len(result) > MAX_HOSTCALL_BYTES:
        result = b'{"error":"the inference result is over the host-call limit of 1 MiB"}'
    out = step.deliver(result, "the host.infer result")
    return _pack(out, len(result)) if out else 0


@_host_function(default=None)
def _host_log(step: _Step, ptr: int, length: int) -> None:
    text = step.read(ptr & 0xFFFFFFFF, length & 0xFFFFFFFF, "the host.log line")
    step.call_host(step.host.log, text)
    return None


@_host_function(default=0)
def _host_random(step: _Step) -> int:
    return _to_i64(step.call_host(step.host.random))


@_host_function(default=0)
def _host_now(step: _Step) -> int:
    return _to_i64(step.call_host(step.host.now))


@_host_function(default=_ERRNO_FAULT)
def _wasi_random_get(step: _Step, ptr: int, length: int) -> int:
    ptr, length = ptr & 0xFFFFFFFF, length & 0xFFFFFFFF
    if length > MAX_RANDOM_GET_BYTES:
        return _ERRNO_INVAL
    words = [step.call_host(step.host.random) & _U64 for _ in range((length + 7) // 8)]
    step.calls += max(0, len(words) - 1)
    data = b"".join(struct.pack("<Q", w) for w in words)[:length]
    return 0 if step.write(ptr, data) else _ERRNO_FAULT


@_host_function(default=_ERRNO_FAULT)
def _wasi_clock_time_get(step: _Step, clock_id: int, precision: int, ptr: int) -> int:
    if not 0 <= clock_id <= 3:
        return _ERRNO_INVAL
    data = struct.pack("<Q", step.call_host(step.host.now) & _U64)
    return 0 if step.write(ptr & 0xFFFFFFFF, data) else _ERRNO_FAULT


@_host_function(default=_ERRNO_FAULT)
def _wasi_clock_res_get(step: _Step, clock_id: int, ptr: int) -> int:
    if not 0 <= clock_id <= 3:
        return _ERRNO_INVAL
    return 0 if step.write(ptr & 0xFFFFFFFF, struct.pack("<Q", 1)) else _ERRNO_FAULT


@_host_function(default=_ERRNO_NOTSUP)
def _wasi_poll_oneoff(step: _Step, *args: int) -> int:
    return _ERRNO_NOTSUP


_HOST_FUNCS: dict[str, Callable[..., Any]] = {
    "infer": _host_infer, "log": _host_log, "random": _host_random, "now": _host_now,
}
_WASI_FUNCS: dict[str, Callable[..., Any]] = {
    "random_get": _wasi_random_get, "clock_time_get": _wasi_clock_time_get,
    "clock_res_get": _wasi_clock_res_get, "poll_oneoff": _wasi_poll_oneoff,
}


def run_step(agent: CompiledAgent, input_json: bytes, host: GuestHost, *, fuel: int,
             memory_bytes: int, timeout_s: float, max_output_bytes: int) -> StepOutcome:
    """Run one step of ``agent`` in a fresh instance and report what happened.

    Guest faults (out of fuel, memory limit, trap, timeout, output too large or out of
    bounds) come back as ``StepOutcome.fault``; the output bytes are not decoded here (see
    :func:`~workbench._wasm._abi.outcome_to_result`). Raises only what ``host`` raised (the
    guest is stopped first) and ValueError for non-positive limits. Safe to call from
    several threads at once.
    """
    if fuel <= 0 or memory_bytes <= 0 or timeout_s <= 0 or max_output_bytes < 0:
        raise ValueError("fuel, memory_bytes and timeout_s must be positive")
    state = _state()
    store = wasmtime.Store(state.engine)
    step = _Step(agent, store, host, fuel, timeout_s)
    previous = getattr(_current, "step", None)
    _current.step = step
    state.ticker.acquire()
    try:
        store.set_fuel(fuel)
        store.set_limits(memory_size=memory_bytes)
        step.arm_deadline()
        output, f = _execute(step, input_json, memory_bytes, max_output_bytes)
    finally:
        state.ticker.release()
        _current.step = previous
    if step.host_error is not None:
        raise step.host_error
    return _outcome(step, output, f, memory_bytes)


def _execute(step: _Step, input_json: bytes, memory_bytes: int,
             max_output_bytes: int) -> tuple[bytes | None, Fault | None]:
    """Instantiate, write the input, call step, read the output. Never raises on a guest."""
    agent = step.agent
    if agent.min_memory_bytes > memory_bytes:
        return None, fault("memory_limit", f"the module starts with {agent.min_memory_bytes} "
                           f"bytes of memory, over the limit of {memory_bytes}",
                           memory_bytes=memory_bytes, memory_size=agent.min_memory_bytes,
                           cause="initial memory")
    try:
        packed = _call_step(step, input_json)
    except _Stop as stop:
        step.stop(stop.fault)
    except wasmtime.Trap as trap:
        return None, _trap_fault(trap, step)
    except wasmtime.WasmtimeError as exc:
        return None, step.stopped or _error_fault(exc)
    if step.halted:
        return None, step.stopped
    if packed is None:
        return None, fault("malformed_output", f"alloc returned 0 for the {len(input_json)}"
                           "-byte step input", reason="alloc_failed")
    return _read_output(step, packed & _U64, max_output_bytes)


def _call_step(step: _Step, input_json: bytes) -> int | None:
    """Instantiate, initialize, copy the input in and call ``step``; None if alloc failed.

    Raises wasmtime.Trap/WasmtimeError for guest failures, _Stop for ABI violations.
    """
    agent = step.agent
    if agent.uses_wasi:
        step.store.set_wasi(wasmtime.WasiConfig())
    exports = agent.pre.instantiate(step.store).exports(step.store)
    step.memory = _export(exports, "memory", wasmtime.Memory)
    step.alloc = _export(exports, "alloc", wasmtime.Func)
    if agent.has_initialize:
        _export(exports, "_initialize", wasmtime.Func)(step.store)
    if step.halted:
        return 0
    ptr = step.deliver(input_json, "the step input")
    if ptr == 0:
        return None
    return int(_export(exports, "step", wasmtime.Func)(step.store, ptr, len(input_json)))


def _export(exports: Any, name: str, kind: type[_T]) -> _T:
    item = exports[name]
    assert isinstance(item, kind), f"compile_module checked the export {name!r}"
    return item


def _read_output(step: _Step, packed: int, max_output_bytes: int
                 ) -> tuple[bytes | None, Fault | None]:
    ptr, length = packed >> 32, packed & 0xFFFFFFFF
    if length > max_output_bytes:
        return None, fault("limit", f"output is {length} bytes, over the limit of "
                           f"{max_output_bytes}; raise max_output_bytes or send less",
                           limit="max_output_bytes", size=length, max=max_output_bytes)
    size = step.memory_size()
    if ptr + length > size:
        return None, fault("malformed_output", f"step returned output at {ptr:#x}+{length}, "
                           f"outside the guest's memory of {size} bytes",
                           reason="out_of_bounds")
    assert step.memory is not None
    return bytes(step.memory.read(step.store, ptr, ptr + length)), None


def _trap_fault(trap: wasmtime.Trap, step: _Step) -> Fault:
    if step.stopped is not None:
        return step.stopped
    code = trap.trap_code
    where = _trap_site(trap)
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return fault("out_of_fuel", f"the step used its whole fuel budget of {step.fuel}"
                     f"{' at ' + where if where else ''}; raise fuel=... or do less per step",
                     fuel=step.fuel, consumed=step.consumed(), at=where)
    if code == wasmtime.TrapCode.INTERRUPT:
        return fault("timeout", f"the wall-clock backstop of {step.timeout_s} s stopped the "
                     "step", timeout_s=step.timeout_s)
    name = code.name.lower() if code is not None else "unknown"
    message = _one_line(trap.message.split("Caused by:")[-1])
    return fault("trap", f"the guest trapped ({name}){' at ' + where if where else ''}: "
                 f"{message}", code=name, message=message, at=where)


def _trap_site(trap: wasmtime.Trap) -> str:
    frames = trap.frames
    if not frames:
        return ""
    top = frames[0]
    name = top.func_name or f"func[{top.func_index}]"
    offset = top.module_offset
    return name if offset >= _U64 else f"{name}@{offset:#x}"


def _error_fault(exc: wasmtime.WasmtimeError) -> Fault:
    if isinstance(exc, wasmtime.ExitTrap):
        return fault("trap", f"the guest called proc_exit({exc.code})", code="exit",
                     message=f"proc_exit({exc.code})", exit_code=exc.code)
    message = _one_line(str(exc))
    return fault("trap", f"the guest failed: {message}", code="error", message=message)


def _outcome(step: _Step, output: bytes | None, f: Fault | None,
             memory_bytes: int) -> StepOutcome:
    size = step.memory_size()
    at_limit = size + PAGE_BYTES > memory_bytes
    consumed = step.stopped_fuel if step.stopped is not None else step.consumed()
    if f is not None and at_limit and f.kind in ("trap", "malformed_output"):
        f = fault("memory_limit", f"the agent reached its memory limit of {memory_bytes} "
                  f"bytes and then failed: {f.detail}", memory_bytes=memory_bytes,
                  memory_size=size, cause=f.to_json())
    return StepOutcome(output=output, fault=f, fuel_consumed=consumed, memory_size=size,
                       memory_at_limit=at_limit, host_calls=step.calls)


"""The wasmtime sandbox: compile an agent module, run one step of it. ABI v1 (docs/abi.md).

Process-local and picklable-free by design: a worker process calls :func:`compile_module`
with wasm bytes, keeps the :class:`CompiledAgent`, and calls :func:`run_step` with input bytes
and a bytes-level :class:`~workbench._wasm._abi.GuestHost`; what comes back is a plain
:class:`~workbench._wasm._abi.StepOutcome`. Guest faults are outcomes, never exceptions.

One engine per process (recreated after ``fork``), configured for determinism: fuel metering,
NaN canonicalisation, no relaxed SIMD, threads, shared memory, memory64, GC or exceptions.
Epoch interruption is only a wall-clock backstop; a ticker thread advances the epoch while
steps run. Every step gets a fresh store and instance, so ``run_step`` may be called from
several threads at once (wasmtime releases the GIL while guest code runs). What the guest
may import, and how host functions reach their step, is in :mod:`._imports`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import wasmtime

from workbench._types import HOST_CALLS, Fault
from workbench._wasm._abi import GuestHost, StepOutcome, fault, limit_fault, output_too_large
from workbench._wasm._cache import ModuleCache, cache_key
from workbench._wasm._imports import (
    HOST_SIGS,
    U64,
    WASI,
    WASI_SHADOWS,
    GuestStep,
    Sig,
    Stop,
    define_imports,
    one_line,
    running,
    trap_fault,
)
from workbench.errors import CapabilityError, ConfigError, InvalidModule

__all__ = [
    "MAX_FUNCTION_BYTES",
    "MAX_MODULE_BYTES",
    "MAX_TABLES",
    "MAX_TABLE_ELEMENTS",
    "PAGE_BYTES",
    "TICK_S",
    "CompiledAgent",
    "compile_module",
    "engine_fingerprint",
    "run_step",
]

PAGE_BYTES = 65536
MAX_MODULE_BYTES = 16 * 1024 * 1024
"""Largest module compile_module accepts."""
MAX_FUNCTION_BYTES = 1024 * 1024
"""Largest function body (code bytes) compile_module accepts. Compiling one function of
1 MiB takes about 1.4 s and 100 MiB, and larger functions cost more than linearly, so this
bounds what one compile can cost its process."""
MAX_TABLE_ELEMENTS = 100_000
"""Elements one table may hold: ``table.grow`` past it returns -1 (as ``memory.grow`` does),
and a module whose initial table is larger gets a ``limit`` fault. About 8 bytes each."""
MAX_TABLES = 16
"""Tables one instance may have (reference types allow several)."""
TICK_S = 0.005
"""Epoch tick of the wall-clock backstop; a timeout fires within about one tick of its time."""

_ENGINE_SETTINGS: dict[str, Any] = {
    "consume_fuel": True,
    "epoch_interruption": True,
    "cranelift_nan_canonicalization": True,
    "wasm_multi_memory": False,
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
_T = TypeVar("_T")


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
_parallel_pid: int | None = None
"""The one process of a fork tree allowed wasmtime's parallel compiler: its thread pool is
process-global and does not survive ``fork``, so a child that used it would deadlock."""


def _state() -> _EngineState:
    """The engine of this process (a forked child builds its own: threads do not fork).

    The first process to build an engine compiles in parallel; its forked descendants
    compile on one thread. Compiled code is the same either way.
    """
    global _engine_state, _parallel_pid
    with _engine_lock:
        pid = os.getpid()
        if _engine_state is None or _engine_state.pid != pid:
            if _parallel_pid is None:
                _parallel_pid = pid
            config = wasmtime.Config()
            for name, value in _ENGINE_SETTINGS.items():
                setattr(config, name, value)
            config.parallel_compilation = _parallel_pid == pid
            engine = wasmtime.Engine(config)
            _engine_state = _EngineState(pid, engine, _Ticker(engine))
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


_EXPORT_SIGS: dict[str, Sig] = {
    "alloc": (("i32",), ("i32",)),
    "step": (("i32", "i32"), ("i64",)),
    "_initialize": ((), ()),
}


def compile_module(wasm: bytes, *, source: str, capabilities: tuple[str, ...],
                   cache_dir: Path | str | None = None) -> CompiledAgent:
    """Validate, compile (or load from ``cache_dir``), check and link an agent module.

    Raises ConfigError for an unknown capability name; CapabilityError when the module
    imports a host function (or WASI clock/random) it is not granted; InvalidModule when the
    bytes are over MAX_MODULE_BYTES, hold a function body over MAX_FUNCTION_BYTES (checked
    before compiling), are not a valid WebAssembly binary, use a disabled feature, miss or
    mistype an ABI export, or import anything ABI v1 does not provide. ``source`` names the
    module in messages.
    """
    granted = _check_capabilities(capabilities)
    if len(wasm) > MAX_MODULE_BYTES:
        raise InvalidModule(source, f"it is {len(wasm)} bytes, over the limit of "
                            f"{MAX_MODULE_BYTES}")
    if not bytes(wasm[:4]) == b"\0asm":
        raise InvalidModule(source, "it is not a WebAssembly binary (no \\0asm header)")
    wasm = bytes(wasm)
    _check_function_sizes(wasm, source)
    sha = hashlib.sha256(wasm).hexdigest()
    module = _compile(wasm, sha, source, cache_dir)
    min_memory = _check_exports(module, source)
    uses_wasi = _check_imports(module, source, granted)
    pre = _link(module, source, granted, uses_wasi)
    has_init = any(e.name == "_initialize" for e in module.exports)
    return CompiledAgent(source, sha, granted, module, pre, has_init, uses_wasi, min_memory)


_CODE_SECTION = 10


def _check_function_sizes(wasm: bytes, source: str) -> None:
    """InvalidModule for a function body over MAX_FUNCTION_BYTES, found before compiling.
    A malformed binary is left to validation, which says what is wrong with it."""
    pos = 8  # after the magic number and version
    while pos < len(wasm):
        section, (size, pos) = wasm[pos], _leb(wasm, pos + 1)
        if size is None:
            return
        if section == _CODE_SECTION:
            _check_bodies(wasm, pos, min(pos + size, len(wasm)), source)
            return
        pos += size


def _check_bodies(wasm: bytes, pos: int, end: int, source: str) -> None:
    count, pos = _leb(wasm, pos)
    for index in range(count or 0):
        if pos >= end:
            return
        size, pos = _leb(wasm, pos)
        if size is None:
            return
        if size > MAX_FUNCTION_BYTES:
            raise InvalidModule(source, f"its function body #{index} is {size} bytes, over "
                                f"the limit of {MAX_FUNCTION_BYTES} (compiling it would cost "
                                "too much time and memory); split the function")
        pos += size


def _leb(data: bytes, pos: int) -> tuple[int | None, int]:
    """An unsigned LEB128 u32 at ``pos``: (value, position after it), or None if malformed."""
    value = 0
    for shift in range(0, 35, 7):
        if pos >= len(data):
            return None, pos
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    return None, pos


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
        raise InvalidModule(source, f"it does not validate: {one_line(str(exc))}") from None


def _signature(ty: Any) -> Sig | None:
    if not isinstance(ty, wasmtime.FuncType):
        return None
    return tuple(str(p) for p in ty.params), tuple(str(r) for r in ty.results)


def _show(sig: Sig) -> str:
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
        elif imp.module == WASI:
            uses_wasi = True
            _check_wasi_import(source, imp.name or "", sig, granted)
        else:
            raise InvalidModule(source, f"it imports {where}; ABI v1 provides only the "
                                f"modules 'host' ({', '.join(HOST_CALLS)}) and '{WASI}'")
    return uses_wasi


def _check_host_import(source: str, name: str, sig: Sig, granted: tuple[str, ...]) -> None:
    want = HOST_SIGS.get(name)
    if want is None:
        raise InvalidModule(source, f"it imports host.{name}, which ABI v1 does not have "
                            f"(host functions: {', '.join(HOST_CALLS)})")
    if name not in granted:
        raise CapabilityError(source, name, granted)
    if sig != want:
        raise InvalidModule(source, f"it imports host.{name} as {_show(sig)}, ABI v1 "
                            f"defines {_show(want)}")


def _check_wasi_import(source: str, name: str, sig: Sig, granted: tuple[str, ...]) -> None:
    shadow = WASI_SHADOWS.get(name)
    if shadow is None:
        return  # wasmtime's own WASI checks the rest when linking
    capability, want = shadow
    if capability is not None and capability not in granted:
        raise CapabilityError(source, capability, granted, via=f"{WASI}.{name}")
    if sig != want:
        raise InvalidModule(source, f"it imports {WASI}.{name} as {_show(sig)}, WASI "
                            f"preview 1 defines {_show(want)}")


def _link(module: wasmtime.Module, source: str, granted: tuple[str, ...],
          uses_wasi: bool) -> wasmtime.InstancePre:
    """A linker with only the granted host functions (and sandboxed WASI when imported)."""
    linker = wasmtime.Linker(_state().engine)
    define_imports(linker, granted, uses_wasi)
    try:
        return linker.instantiate_pre(module)
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(source, f"it cannot be linked: {one_line(str(exc))}") from None


# --- one step ------------------------------------------------------------------------------------


def run_step(agent: CompiledAgent, input_json: bytes, host: GuestHost, *, fuel: int,
             memory_bytes: int, timeout_s: float | None, max_output_bytes: int) -> StepOutcome:
    """Run one step of ``agent`` in a fresh instance and report what happened.

    Guest faults (out of fuel, memory limit, trap, timeout, output too large or out of
    bounds) come back as ``StepOutcome.fault``; the output bytes are not decoded here (see
    :func:`~workbench._wasm._abi.outcome_to_result`). ``timeout_s=None`` runs without the
    wall-clock backstop (replay: fuel alone bounds the step). Raises only what ``host``
    raised (the guest is stopped first) and ValueError for out-of-range limits. Safe to call
    from several threads at once.
    """
    if not (0 < fuel < 1 << 63 and memory_bytes > 0 and max_output_bytes >= 0
            and (timeout_s is None or 0 < timeout_s < math.inf)):
        raise ValueError(f"bad limits: fuel={fuel} (1 to 2**63 - 1), memory_bytes="
                         f"{memory_bytes}, timeout_s={timeout_s} (positive or None), "
                         f"max_output_bytes={max_output_bytes} (0 or more)")
    state = _state()
    store = wasmtime.Store(state.engine)
    step = GuestStep(store, host, fuel=fuel, timeout_s=timeout_s, tick_s=TICK_S)
    state.ticker.acquire()
    try:
        with running(step):
            store.set_fuel(fuel)
            store.set_limits(memory_size=memory_bytes, table_elements=MAX_TABLE_ELEMENTS,
                             instances=1, tables=MAX_TABLES, memories=1)
            step.arm_deadline()
            output, f = _execute(agent, step, input_json, memory_bytes, max_output_bytes)
    finally:
        state.ticker.release()
    if step.host_error is not None:
        raise step.host_error
    return _outcome(step, output, f, memory_bytes)


def _execute(agent: CompiledAgent, step: GuestStep, input_json: bytes, memory_bytes: int,
             max_output_bytes: int) -> tuple[bytes | None, Fault | None]:
    """Instantiate, write the input, call step, read the output. Never raises on a guest."""
    if agent.min_memory_bytes > memory_bytes:
        return None, fault("memory_limit", f"the module starts with {agent.min_memory_bytes} "
                           f"bytes of memory, over the limit of {memory_bytes}",
                           memory_bytes=memory_bytes, memory_size=agent.min_memory_bytes,
                           cause="initial memory")
    try:
        packed = _call_step(agent, step, input_json)
    except Stop as stop:
        step.stop(stop.fault)
    except wasmtime.Trap as trap:
        return None, trap_fault(trap, step)
    except wasmtime.WasmtimeError as exc:
        return None, step.stopped or _error_fault(exc)
    if step.halted:
        return None, step.stopped
    if packed is None:
        return None, fault("malformed_output", f"alloc returned 0 for the {len(input_json)}"
                           "-byte step input", reason="alloc_failed")
    return _read_output(step, packed & U64, max_output_bytes)


def _call_step(agent: CompiledAgent, step: GuestStep, input_json: bytes) -> int | None:
    """Instantiate, initialize, copy the input in and call ``step``; None if alloc failed.

    Raises wasmtime.Trap/WasmtimeError for guest failures, Stop for ABI violations.
    """
    if agent.uses_wasi:
        step.store.set_wasi(wasmtime.WasiConfig())
    try:
        instance = agent.pre.instantiate(step.store)
    except wasmtime.Trap:
        raise
    except wasmtime.WasmtimeError as exc:
        over = _table_limit_fault(one_line(str(exc)))
        if over is None:
            raise
        raise Stop(over) from None
    exports = instance.exports(step.store)
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


_TABLE_LIMITS = (
    (re.compile(r"table minimum size of (\d+) elements exceeds table limits"),
     "max_table_elements", MAX_TABLE_ELEMENTS, "a table of {} elements", "smaller tables"),
    (re.compile(r"table count too high at (\d+)"), "max_tables", MAX_TABLES, "{} tables",
     "fewer tables"),
)


def _table_limit_fault(message: str) -> Fault | None:
    """The ``limit`` fault for an instantiation refused by the store's table limits."""
    for pattern, limit, most, what, advice in _TABLE_LIMITS:
        found = pattern.search(message)
        if found is not None:
            value = int(found.group(1))
            return limit_fault(limit, value, most, f"the module needs {what.format(value)}, "
                               f"over the limit of {most}; declare {advice}")
    return None


def _export(exports: Any, name: str, kind: type[_T]) -> _T:
    item = exports[name]
    assert isinstance(item, kind), f"compile_module checked the export {name!r}"
    return item


def _read_output(step: GuestStep, packed: int, max_output_bytes: int
                 ) -> tuple[bytes | None, Fault | None]:
    ptr, length = packed >> 32, packed & 0xFFFFFFFF
    if length > max_output_bytes:
        return None, output_too_large(length, max_output_bytes)
    size = step.memory_size()
    if ptr + length > size:
        return None, fault("malformed_output", f"step returned output at {ptr:#x}+{length}, "
                           f"outside the guest's memory of {size} bytes",
                           reason="out_of_bounds")
    assert step.memory is not None
    return bytes(step.memory.read(step.store, ptr, ptr + length)), None


def _error_fault(exc: wasmtime.WasmtimeError) -> Fault:
    if isinstance(exc, wasmtime.ExitTrap):
        return fault("trap", f"the guest called proc_exit({exc.code})", code="exit",
                     message=f"proc_exit({exc.code})", exit_code=exc.code)
    message = one_line(str(exc))
    return fault("trap", f"the guest failed: {message}", code="error", message=message)


def _outcome(step: GuestStep, output: bytes | None, f: Fault | None,
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


"""What a guest can import: the host functions, the WASI shadows, and the step they reach.

Host functions are defined once per linker and find the step they serve through a
thread-local (wasmtime calls them on the thread that entered the guest), so one compiled,
linked agent serves steps in many threads at once. They never raise into wasmtime-py, which
keeps the last host exception in a process-wide global that concurrent steps would race on:
a host function ends the step by setting the store's fuel to zero and recording why.
"""

from __future__ import annotations

import math
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import wasmtime

from workbench._types import Fault
from workbench._wasm._abi import (
    MAX_HOST_CALLS,
    MAX_HOSTCALL_BYTES,
    MAX_INFER_CALLS,
    MAX_LOG_BYTES,
    MAX_STEP_HOSTCALL_BYTES,
    GuestHost,
    fault,
    limit_fault,
)

__all__ = [
    "HOST_SIGS",
    "MAX_RANDOM_GET_BYTES",
    "U64",
    "WASI",
    "WASI_SHADOWS",
    "GuestStep",
    "Sig",
    "Stop",
    "define_imports",
    "one_line",
    "running",
    "trap_fault",
]

MAX_RANDOM_GET_BYTES = 256
"""Largest WASI random_get buffer (as getentropy); larger requests get EINVAL."""
WASI = "wasi_snapshot_preview1"
NO_DEADLINE_TICKS = 1 << 48
"""The epoch deadline of a step run without a wall-clock backstop (centuries of ticks)."""
U64 = (1 << 64) - 1
_T = TypeVar("_T")
_ERRNO_FAULT, _ERRNO_INVAL, _ERRNO_NOTSUP = 21, 28, 58

Sig = tuple[tuple[str, ...], tuple[str, ...]]
HOST_SIGS: dict[str, Sig] = {
    "infer": (("i32", "i32"), ("i64",)),
    "log": (("i32", "i32"), ()),
    "random": ((), ("i64",)),
    "now": ((), ("i64",)),
}
WASI_SHADOWS: dict[str, tuple[str | None, Sig]] = {
    "random_get": ("random", (("i32", "i32"), ("i32",))),
    "clock_time_get": ("now", (("i32", "i64", "i32"), ("i32",))),
    "clock_res_get": ("now", (("i32", "i32"), ("i32",))),
    "poll_oneoff": (None, (("i32", "i32", "i32", "i32"), ("i32",))),
}


def define_imports(linker: wasmtime.Linker, granted: tuple[str, ...],
                   uses_wasi: bool) -> None:
    """Define only the granted host functions, and sandboxed WASI (shadowed) when used."""
    for name in granted:
        params, results = HOST_SIGS[name]
        linker.define_func("host", name, _functype(params, results), _HOST_FUNCS[name])
    if uses_wasi:
        linker.allow_shadowing = True
        linker.define_wasi()
        for name, (capability, (params, results)) in WASI_SHADOWS.items():
            if capability is None or capability in granted:
                linker.define_func(WASI, name, _functype(params, results), _WASI_FUNCS[name])


def _functype(params: tuple[str, ...], results: tuple[str, ...]) -> wasmtime.FuncType:
    kinds = {"i32": wasmtime.ValType.i32, "i64": wasmtime.ValType.i64}
    return wasmtime.FuncType([kinds[p]() for p in params], [kinds[r]() for r in results])


def one_line(text: str, limit: int = 400) -> str:
    """``text`` (a wasmtime message, often multi-line) as one bounded line for a fault."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# --- the step host functions serve ----------------------------------------------------------------


class Stop(Exception):
    """Raised inside the sandbox (never into wasmtime) to end the step with ``fault``."""

    def __init__(self, f: Fault) -> None:
        super().__init__(f.detail)
        self.fault = f


class GuestStep:
    """The state of one running step, reachable from host functions via a thread-local."""

    def __init__(self, store: wasmtime.Store, host: GuestHost, *, fuel: int,
                 timeout_s: float | None, tick_s: float) -> None:
        self.store = store
        self.host = host
        self.fuel = fuel
        self.timeout_s = timeout_s
        self.tick_s = tick_s
        self.started = time.monotonic()
        self.host_seconds = 0.0
        self._host_from: float | None = None  # when the running host function started
        self.calls = 0
        self.infers = 0
        self.payload_bytes = 0
        self.log_bytes = 0
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
        """Deadline = the guest time left; time spent in host calls does not count. Without
        a ``timeout_s`` (replay) the deadline is out of reach: fuel alone bounds the step."""
        if self.timeout_s is None:
            self.store.set_epoch_deadline(NO_DEADLINE_TICKS)
            return
        guest_seconds = time.monotonic() - self.started - self.host_seconds
        left = max(0.0, self.timeout_s - guest_seconds)
        self.store.set_epoch_deadline(math.ceil(left / self.tick_s) + 1)

    # -- what host calls cost: counted against the step's bounds (docs/abi.md, Limits)

    def count_calls(self, n: int) -> None:
        """Count ``n`` host calls; Stop past MAX_HOST_CALLS (before the host is reached)."""
        self.calls += n
        if self.calls > MAX_HOST_CALLS:
            raise Stop(limit_fault("max_host_calls", self.calls, MAX_HOST_CALLS,
                                   f"the agent made more than {MAX_HOST_CALLS} host calls in "
                                   "one step; do less per step"))

    def count_bytes(self, n: int) -> None:
        """Count ``n`` payload bytes copied; Stop past MAX_STEP_HOSTCALL_BYTES."""
        self.payload_bytes += n
        if self.payload_bytes > MAX_STEP_HOSTCALL_BYTES:
            raise Stop(limit_fault("max_step_hostcall_bytes", self.payload_bytes,
                                   MAX_STEP_HOSTCALL_BYTES,
                                   f"host calls copied over {MAX_STEP_HOSTCALL_BYTES} bytes "
                                   "in one step; send less through infer and log"))

    def count_log(self, n: int) -> None:
        """Count a log line of ``n`` bytes; Stop past MAX_LOG_BYTES."""
        self.log_bytes += n
        if self.log_bytes > MAX_LOG_BYTES:
            raise Stop(limit_fault("max_log_bytes", self.log_bytes, MAX_LOG_BYTES,
                                   f"the agent logged over {MAX_LOG_BYTES} bytes in one step; "
                                   "log less"))

    def count_infer(self) -> None:
        """Count an infer call; Stop past MAX_INFER_CALLS."""
        self.infers += 1
        if self.infers > MAX_INFER_CALLS:
            raise Stop(limit_fault("max_infer_calls", self.infers, MAX_INFER_CALLS,
                                   f"the agent called infer more than {MAX_INFER_CALLS} times "
                                   "in one step; batch its requests or spread them over steps"))

    @contextmanager
    def on_host_clock(self) -> Iterator[None]:
        """Time spent in here (a host function: the host's work, copying its payloads,
        waiting for the inference batch) does not count against the guest's deadline, except
        the guest's own ``alloc`` run from here (see :meth:`deliver`). The deadline is
        re-armed before the guest runs again."""
        self._host_from = time.monotonic()
        try:
            yield
        finally:
            self._pause_host_clock()
            self.arm_deadline()

    def _pause_host_clock(self) -> None:
        if self._host_from is not None:
            self.host_seconds += time.monotonic() - self._host_from
            self._host_from = None

    # -- guest memory

    def mem(self) -> wasmtime.Memory:
        if self.memory is None:
            raise Stop(fault("trap", "a host function was called from the module's start "
                              "function; call host functions from _initialize or step",
                              code="host_call_in_start"))
        return self.memory

    def memory_size(self) -> int:
        return self.memory.data_len(self.store) if self.memory is not None else 0

    def read(self, ptr: int, length: int, what: str, *, log: bool = False) -> bytes:
        """Copy a host-call payload out of guest memory, once it is counted (as a ``log``
        line too, if ``log``). Raises Stop past a limit or outside memory."""
        if length > MAX_HOSTCALL_BYTES:
            raise Stop(limit_fault("max_hostcall_bytes", length, MAX_HOSTCALL_BYTES,
                                   f"{what} is {length} bytes, over the host-call limit of "
                                   f"{MAX_HOSTCALL_BYTES}"))
        if log:
            self.count_log(length)
        self.count_bytes(length)
        memory = self.mem()
        size = memory.data_len(self.store)
        if ptr + length > size:
            raise Stop(_out_of_bounds(what, ptr, length, size))
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
        in_host = self._host_from is not None
        self._pause_host_clock()  # alloc is guest code, on the guest's clock
        self.arm_deadline()
        try:
            ptr = int(self.alloc(self.store, len(data))) & 0xFFFFFFFF
        finally:
            if in_host:
                self._host_from = time.monotonic()
        if ptr == 0:
            return 0
        if not self.write(ptr, data):
            raise Stop(_out_of_bounds(f"the buffer alloc returned for {what}", ptr,
                                       len(data), self.memory_size()))
        return ptr


def _out_of_bounds(what: str, ptr: int, length: int, size: int) -> Fault:
    return fault("trap", f"{what} at {ptr:#x}+{length} lies outside the guest's memory of "
                 f"{size} bytes", code="memory_out_of_bounds")


_current = threading.local()


@contextmanager
def running(step: GuestStep) -> Iterator[GuestStep]:
    """Make ``step`` the one this thread's host function calls serve."""
    previous = getattr(_current, "step", None)
    _current.step = step
    try:
        yield step
    finally:
        _current.step = previous


def _host_function(default: int | None) -> Callable[[Callable[..., int | None]],
                                                    Callable[..., int | None]]:
    """Wrap a host function: find its step, count the call, turn every failure into a stop.

    Nothing may raise into wasmtime-py: it keeps the last host exception in a process-wide
    global, which concurrent steps would race on.
    """

    def wrap(impl: Callable[..., int | None]) -> Callable[..., int | None]:
        def host_function(*args: int) -> int | None:
            step: GuestStep | None = getattr(_current, "step", None)
            if step is None or step.halted:
                return default
            try:
                step.count_calls(1)
                with step.on_host_clock():
                    return impl(step, *args)
            except Stop as stop:
                step.stop(stop.fault)
            except wasmtime.Trap as trap:  # the guest's alloc trapped inside this call
                step.stop(trap_fault(trap, step))
            except BaseException as exc:  # the host failed: not the guest's fault
                step.fail_host(exc)
            return default

        host_function.__name__ = impl.__name__
        return host_function

    return wrap


def _to_i64(value: int) -> int:
    value &= U64
    return value - (1 << 64) if value >= 1 << 63 else value


def _pack(ptr: int, length: int) -> int:
    return _to_i64((ptr << 32) | length)


@_host_function(default=0)
def _host_infer(step: GuestStep, ptr: int, length: int) -> int:
    step.count_infer()
    request = step.read(ptr & 0xFFFFFFFF, length & 0xFFFFFFFF, "the host.infer request")
    result = bytes(step.host.infer(request))
    if len(result) > MAX_HOSTCALL_BYTES:
        result = b'{"error":"the inference result is over the host-call limit of 1 MiB"}'
    step.count_bytes(len(result))
    out = step.deliver(result, "the host.infer result")
    return _pack(out, len(result)) if out else 0


@_host_function(default=None)
def _host_log(step: GuestStep, ptr: int, length: int) -> None:
    text = step.read(ptr & 0xFFFFFFFF, length & 0xFFFFFFFF, "the host.log line", log=True)
    step.host.log(text)
    return None


@_host_function(default=0)
def _host_random(step: GuestStep) -> int:
    return _to_i64(step.host.random())


@_host_function(default=0)
def _host_now(step: GuestStep) -> int:
    return _to_i64(step.host.now())


@_host_function(default=_ERRNO_FAULT)
def _wasi_random_get(step: GuestStep, ptr: int, length: int) -> int:
    """Each 8 bytes are one host.random call, counted (all of them) before any is made."""
    ptr, length = ptr & 0xFFFFFFFF, length & 0xFFFFFFFF
    if length > MAX_RANDOM_GET_BYTES:
        return _ERRNO_INVAL
    count = (length + 7) // 8
    step.count_calls(max(0, count - 1))  # this call itself was counted as one
    words = [step.host.random() & U64 for _ in range(count)]
    data = b"".join(struct.pack("<Q", w) for w in words)[:length]
    return 0 if step.write(ptr, data) else _ERRNO_FAULT


@_host_function(default=_ERRNO_FAULT)
def _wasi_clock_time_get(step: GuestStep, clock_id: int, precision: int, ptr: int) -> int:
    if not 0 <= clock_id <= 3:
        return _ERRNO_INVAL
    data = struct.pack("<Q", step.host.now() & U64)
    return 0 if step.write(ptr & 0xFFFFFFFF, data) else _ERRNO_FAULT


@_host_function(default=_ERRNO_FAULT)
def _wasi_clock_res_get(step: GuestStep, clock_id: int, ptr: int) -> int:
    if not 0 <= clock_id <= 3:
        return _ERRNO_INVAL
    return 0 if step.write(ptr & 0xFFFFFFFF, struct.pack("<Q", 1)) else _ERRNO_FAULT


@_host_function(default=_ERRNO_NOTSUP)
def _wasi_poll_oneoff(step: GuestStep, *args: int) -> int:
    return _ERRNO_NOTSUP


_HOST_FUNCS: dict[str, Callable[..., Any]] = {
    "infer": _host_infer, "log": _host_log, "random": _host_random, "now": _host_now,
}
_WASI_FUNCS: dict[str, Callable[..., Any]] = {
    "random_get": _wasi_random_get, "clock_time_get": _wasi_clock_time_get,
    "clock_res_get": _wasi_clock_res_get, "poll_oneoff": _wasi_poll_oneoff,
}



def trap_fault(trap: wasmtime.Trap, step: GuestStep) -> Fault:
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
    message = one_line(trap.message.split("Caused by:")[-1])
    return fault("trap", f"the guest trapped ({name}){' at ' + where if where else ''}: "
                 f"{message}", code=name, message=message, at=where)


def _trap_site(trap: wasmtime.Trap) -> str:
    frames = trap.frames
    if not frames:
        return ""
    top = frames[0]
    name = top.func_name or f"func[{top.func_index}]"
    offset = top.module_offset
    return name if offset >= U64 else f"{name}@{offset:#x}"

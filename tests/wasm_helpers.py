"""Helpers for the WebAssembly sandbox tests: a recording host and a WAT agent builder."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import wasmtime

from workbench._types import JSON, StepRequest
from workbench._wasm._abi import StepOutcome, encode_input
from workbench._wasm._sandbox import CompiledAgent, compile_module, run_step

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "agents"
ALL_CAPS = ("infer", "log", "random", "now")
OK_OUTPUT = b'{"state":"ok","status":"idle"}'
PAGE = 65536


class FakeHost:
    """A bytes-level GuestHost: deterministic values, every call recorded."""

    def __init__(self, infer: Callable[[bytes], bytes] | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self._infer = infer or (lambda req: b'{"text":"fine","tokens":[1],"finish_reason":"stop"}')
        self._random = 0
        self._now = 0

    def infer(self, request: bytes) -> bytes:
        self.calls.append(("infer", request))
        return self._infer(request)

    def log(self, text: bytes) -> None:
        self.calls.append(("log", text))

    def random(self) -> int:
        self._random += 1
        value = (0x9E3779B97F4A7C15 * self._random) % (1 << 64)
        self.calls.append(("random", value))
        return value

    def now(self) -> int:
        self._now += 1
        self.calls.append(("now", self._now))
        return self._now

    def logs(self) -> list[bytes]:
        return [arg for name, arg in self.calls if name == "log"]


class RecordingHostCalls:
    """A HostCalls (the run's protocol) that records calls; infer answers from a function."""

    def __init__(self, infer: Callable[[Mapping[str, JSON]], dict[str, JSON]] | None = None):
        self.calls: list[tuple[str, Any]] = []
        self._infer = infer or (lambda req: {"text": "fine", "tokens": [1]})
        self._lock = threading.Lock()

    def infer(self, request: Mapping[str, JSON]) -> dict[str, JSON]:
        self.calls.append(("infer", dict(request)))
        return self._infer(request)

    def log(self, text: str) -> None:
        self.calls.append(("log", text))

    def random(self) -> int:
        self.calls.append(("random", None))
        return (1 << 64) - 1

    def now(self) -> int:
        self.calls.append(("now", None))
        return 3_000_000_001

    def restart(self) -> None:
        self.calls.append(("restart", None))


def leb128(value: int) -> bytes:
    """Unsigned LEB128, the integer encoding of the WebAssembly binary format."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def wat_string(data: bytes) -> str:
    """``data`` as the body of a WAT string literal."""
    return "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:02x}" for b in data)


ALLOC = """
  (global $heap (mut i32) (i32.const 4096))
  (func $alloc (export "alloc") (param $size i32) (result i32)
    (local $ptr i32) (local $end i32) (local $pages i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.lt_u (local.get $end) (local.get $ptr)) (then (return (i32.const 0))))
    (local.set $pages (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $ptr))
"""


def agent_wat(step_body: str = "", *, imports: str = "", extra: str = "",
              output: bytes = OK_OUTPUT, memory: str = "1", alloc: str = ALLOC) -> str:
    """A complete ABI v1 agent: ``step`` runs ``step_body`` then returns ``output``.

    ``output`` lives at address 1024; ``step_body`` sees params $in/$len and local $t (i64).
    """
    ret = f"(i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const {len(output)}))"
    return f"""(module
  {imports}
  (memory (export "memory") {memory})
  (data (i32.const 1024) "{wat_string(output)}")
  {alloc}
  {extra}
  (func (export "step") (param $in i32) (param $len i32) (result i64)
    (local $t i64)
    {step_body}
    {ret}))
"""


def wasm(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def compile_wat(text: str, caps: tuple[str, ...] = ALL_CAPS, **kw: Any) -> CompiledAgent:
    return compile_module(wasm(text), source="<test>", capabilities=caps, **kw)


def example(name: str, caps: tuple[str, ...] = ALL_CAPS) -> CompiledAgent:
    path = EXAMPLES / name
    return compile_module(wasm(path.read_text()), source=str(path), capabilities=caps)


def request(state: JSON = None, *, agent: str = "a", step: int = 0) -> bytes:
    return encode_input(StepRequest(agent=agent, step=step, state=state, inbox=()))


def run(agent: CompiledAgent, input_json: bytes | None = None, host: Any = None, *,
        fuel: int = 10_000_000, memory_bytes: int = 16 * PAGE, timeout_s: float = 10.0,
        max_output_bytes: int = 1 << 20) -> StepOutcome:
    return run_step(agent, request() if input_json is None else input_json,
                    host if host is not None else FakeHost(), fuel=fuel,
                    memory_bytes=memory_bytes, timeout_s=timeout_s,
                    max_output_bytes=max_output_bytes)


def output_json(outcome: StepOutcome) -> Any:
    assert outcome.fault is None, outcome.fault
    assert outcome.output is not None
    return json.loads(outcome.output)

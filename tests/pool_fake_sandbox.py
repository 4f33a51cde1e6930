"""The real sandbox, except for modules whose bytes contain a marker: compiling one aborts
(SIGABRT, as a panic in the compiler would) or hangs the worker process, or each of its steps
aborts the worker. Loaded by worker processes in tests of the pool's crash handling and
compile time limit (through ``_worker.SANDBOX``); nothing else uses it."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from workbench._wasm import _sandbox
from workbench._wasm._abi import GuestHost, StepOutcome

__all__ = ["CRASH", "CRASH_STEP", "HANG", "compile_module", "run_step"]

CRASH = b"crash-the-compiler"
HANG = b"hang-the-compiler"
CRASH_STEP = b"crash-every-step"
_poisoned: set[int] = set()


def compile_module(wasm: bytes, *, source: str, capabilities: tuple[str, ...],
                   cache_dir: Path | None = None) -> Any:
    if CRASH in wasm:
        os.abort()
    if HANG in wasm:
        threading.Event().wait()
    agent = _sandbox.compile_module(wasm, source=source, capabilities=capabilities,
                                    cache_dir=cache_dir)
    if CRASH_STEP in wasm:
        _poisoned.add(id(agent))
    return agent


def run_step(agent: Any, input_json: bytes, host: GuestHost, **limits: Any) -> StepOutcome:
    if id(agent) in _poisoned:
        host.log(b"about to crash")
        os.abort()
    return _sandbox.run_step(agent, input_json, host, **limits)

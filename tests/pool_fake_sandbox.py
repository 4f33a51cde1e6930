"""The real sandbox, except that compiling a module whose bytes contain a marker aborts
(SIGABRT) or hangs the compiling process. Loaded by worker processes in tests of the pool's
compile time limit and crash handling (``_worker.SANDBOX``); nothing else uses it."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from workbench._wasm import _sandbox
from workbench._wasm._sandbox import run_step

__all__ = ["CRASH", "HANG", "compile_module", "run_step"]

CRASH = b"crash-the-compiler"
HANG = b"hang-the-compiler"


def compile_module(wasm: bytes, *, source: str, capabilities: tuple[str, ...],
                   cache_dir: Path | None = None) -> Any:
    if CRASH in wasm:
        os.abort()  # SIGABRT, as a Rust panic in the compiler would
    if HANG in wasm:
        threading.Event().wait()
    return _sandbox.compile_module(wasm, source=source, capabilities=capabilities,
                                   cache_dir=cache_dir)

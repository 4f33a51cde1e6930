"""Turning what a user passes to ``run.add_agent`` into an :class:`Executor`.

A callable becomes an in-process :class:`PythonAgent`; a ``.wasm``/``.wat`` path or wasm bytes
(or a sandboxed Python agent's package, see ``workbench._pysandbox``) becomes a sandboxed
agent in the run's worker pool (or in-process with ``workers=0``; see ``_workers``); an
object with ``identity``/``step``/``close`` is used as it is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from workbench._pysandbox import is_package, sandboxed_executor
from workbench._python_agent import PythonAgent
from workbench._types import Executor, Limits
from workbench._workers import WorkerLease
from workbench.errors import ConfigError

_UNITS = {"": 1, "b": 1, "kib": 1024, "kb": 1000, "mib": 1024**2, "mb": 1000**2,
          "gib": 1024**3, "gb": 1000**3}


def parse_bytes(value: int | str) -> int:
    """``16777216``, ``"16MiB"``, ``"512 KiB"`` -> bytes. Raises ConfigError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise ConfigError(f"cannot read {value!r} as a size; write e.g. 16777216 or '16MiB'")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def is_wasm_source(agent: object) -> bool:
    if isinstance(agent, bytes | bytearray):
        return True
    return isinstance(agent, str | Path) and Path(agent).suffix in (".wasm", ".wat")


def wasm_bytes(agent: str | Path | bytes) -> bytes:
    """The module's binary (WAT text is assembled). Raises InvalidModule for bad WAT."""
    from workbench.errors import InvalidModule

    if isinstance(agent, bytes | bytearray):
        data = bytes(agent)
    else:
        path = Path(agent)
        if not path.is_file():
            raise ConfigError(f"agent module {str(path)!r} does not exist; build it with "
                              "`workbench build-agent SOURCE`")
        data = path.read_bytes()
    if not data.startswith(b"\0asm") and not is_package(data):
        import wasmtime

        try:
            data = bytes(wasmtime.wat2wasm(data.decode("utf-8")))
        except (UnicodeDecodeError, wasmtime.WasmtimeError) as exc:
            raise InvalidModule(str(agent)[:80], f"not a wasm binary nor valid WAT: {exc}") \
                from exc
    return data


def stored_module(journal: str | Path, sha256: str) -> Path:
    """Where a run keeps a copy of its module ``sha256`` (or of a sandboxed Python agent's
    package): ``modules/`` beside the journal, so replay and forks find the exact code by
    hash."""
    return Path(journal).parent / "modules" / f"{sha256}.wasm"


def make_executor(name: str, agent: Any, *, limits: Limits, capabilities: tuple[str, ...],
                  workers: WorkerLease, wall_clock: bool = True) -> Executor:
    """An executor for ``agent`` (see the module docstring). Raises ConfigError/InvalidModule.

    ``wall_clock=False`` (replay) runs steps without the ``timeout_s`` backstop (fuel alone
    bounds WebAssembly steps), so a step that completed once completes again on any machine.
    """
    if is_wasm_source(agent):
        module = wasm_bytes(agent)
        if is_package(module):
            return sandboxed_executor(module, name=name, limits=limits,
                                      capabilities=capabilities, workers=workers,
                                      wall_clock=wall_clock)
        if workers.in_process:
            from workbench._wasm._local import LocalWasmExecutor

            return LocalWasmExecutor(module, name=name, limits=limits,
                                     capabilities=capabilities, wall_clock=wall_clock)
        pooled: Executor = workers.pool().executor(
            module, name=name, limits=limits, capabilities=capabilities, wall_clock=wall_clock)
        return pooled
    if isinstance(agent, Executor):
        return agent
    if callable(agent):
        return PythonAgent(agent, name=name, timeout_s=limits.timeout_s if wall_clock else None)
    raise ConfigError(f"agent {name!r}: expected a step function, a .wasm/.wat path, wasm "
                      f"bytes or an Executor, got {type(agent).__name__}")


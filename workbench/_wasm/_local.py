"""LocalWasmExecutor: a sandboxed WebAssembly agent run in the calling process.

The same sandbox as the worker pool, without the processes: for tests, tiny runs and
debugging. A guest cannot corrupt the kernel (wasmtime isolates it, fuel and memory limits
bound it), but a crash of wasmtime itself would take the process down; use the worker pool
(the default in a run) when that matters.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

import wasmtime

from workbench._pysandbox._package import is_package
from workbench._types import HOST_CALLS, AgentIdentity, HostCalls, Limits, StepRequest, StepResult
from workbench._wasm._abi import agent_identity, step_in_process
from workbench._wasm._sandbox import CompiledAgent, compile_module, run_step
from workbench.errors import ConfigError, InvalidModule, RunClosed

__all__ = ["LocalWasmExecutor", "load_wasm"]


def load_wasm(source: str | Path | bytes) -> tuple[bytes, str]:
    """(module binary, a name for messages) from a path, WAT text or wasm/WAT bytes.

    A ``str`` starting with ``(`` is WAT text; any other ``str`` is a path. Raises
    ConfigError for a missing file and InvalidModule for WAT that does not assemble.
    """
    if isinstance(source, str) and source.lstrip().startswith("("):
        return _assemble(source, "<wat text>"), "<wat text>"
    if isinstance(source, bytes | bytearray):
        data, label = bytes(source), f"<{len(source)} bytes>"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"agent module {str(path)!r} does not exist; build it with "
                              "`workbench build-agent SOURCE`")
        data, label = path.read_bytes(), str(path)
    if data.startswith(b"\0asm") or is_package(data):  # a module, or a Python agent's package
        return data, label
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidModule(label, "it is neither a wasm binary nor WAT text") from None
    return _assemble(text, label), label


def _assemble(text: str, label: str) -> bytes:
    try:
        return bytes(wasmtime.wat2wasm(text))
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(label, f"its WAT does not assemble: {' '.join(str(exc).split())}"
                            ) from None


class LocalWasmExecutor:
    """Runs one WebAssembly agent (ABI v1) in this process. Implements ``Executor``.

    Compiles at construction: raises ConfigError (missing file, unknown capability),
    InvalidModule (bad module, bad WAT) or CapabilityError (an ungranted import). ``step`` is
    safe to call from several threads; guest faults come back as ``StepResult.fault``.
    ``wall_clock=False`` runs steps without the ``timeout_s`` backstop (replay does).
    """

    def __init__(self, source: str | Path | bytes, *, name: str, limits: Limits | None = None,
                 capabilities: tuple[str, ...] = HOST_CALLS,
                 cache_dir: Path | str | None = None, wall_clock: bool = True) -> None:
        wasm, label = load_wasm(source)
        self.name = name
        self.limits = limits if limits is not None else Limits()
        self.capabilities = tuple(capabilities)
        self._timeout_s = self.limits.timeout_s if wall_clock else None
        self._agent: CompiledAgent = compile_module(
            wasm, source=label, capabilities=self.capabilities, cache_dir=cache_dir)
        self._closed = threading.Event()

    @property
    def wasm_sha256(self) -> str:
        return self._agent.sha256

    def identity(self) -> AgentIdentity:
        return agent_identity(self._agent.sha256, self.limits, self._agent.capabilities)

    def step(self, request: StepRequest, host: HostCalls) -> StepResult:
        """Run one step in a fresh instance. Raises RunClosed after close(), and whatever
        ``host`` raised other than ValueError from ``infer`` (a host failure)."""
        if self._closed.is_set():
            raise RunClosed(f"executor of agent {self.name!r}")
        return step_in_process(run_step, self._agent, request, host, self.limits,
                               self._timeout_s)

    def close(self) -> None:
        """Refuse further steps (they raise RunClosed). Idempotent."""
        self._closed.set()

    def __enter__(self) -> LocalWasmExecutor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

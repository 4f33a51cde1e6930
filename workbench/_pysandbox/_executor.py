"""Executors for sandboxed Python agents: in the worker pool (the default) or in-process.

Both run the agent's package in the runtime component (``_sandbox``); the pooled one goes
through the WebAssembly worker pool unchanged (a worker loads a package as it loads a module,
see ``workbench._wasm._sandbox.compile_module``), so crash recovery, host-call forwarding and
the inference barrier are the pool's own. The journal names the agent by the package's
sha256, with kind ``python_sandbox``.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from workbench._pysandbox._package import AgentPackage, read_package
from workbench._pysandbox._runtime import runtime_key, runtime_path
from workbench._types import AgentIdentity, Executor, HostCalls, Limits, StepRequest, StepResult
from workbench._wasm._abi import step_in_process
from workbench._workers import WorkerLease
from workbench.errors import RunClosed

__all__ = ["KIND", "LocalPythonSandbox", "PooledPythonSandbox", "python_identity",
           "sandboxed_executor"]

KIND = "python_sandbox"
"""The agent kind the journal records for a sandboxed Python agent."""


def python_identity(package: bytes, entry: str, limits: Limits,
                    capabilities: tuple[str, ...]) -> AgentIdentity:
    return AgentIdentity(kind=KIND, hash=hashlib.sha256(package).hexdigest(), config={
        "entry": entry, "runtime": runtime_key(), "capabilities": list(capabilities),
        "fuel": limits.fuel, "memory_bytes": limits.memory_bytes,
        "max_output_bytes": limits.max_output_bytes})


def sandboxed_executor(package: bytes, *, name: str, limits: Limits,
                       capabilities: tuple[str, ...], workers: WorkerLease,
                       wall_clock: bool = True) -> Executor:
    """An executor for a package (building the runtime first if it is not cached).

    Raises InvalidModule (damaged package), ConfigError (componentize-py missing or failing).
    """
    parsed = read_package(package, name)
    runtime = str(runtime_path())
    if workers.in_process:
        return LocalPythonSandbox(parsed, runtime, name=name, limits=limits,
                                  capabilities=capabilities, wall_clock=wall_clock)
    inner = workers.pool().executor(parsed.with_runtime(runtime), name=name, limits=limits,
                                    capabilities=capabilities, wall_clock=wall_clock)
    return PooledPythonSandbox(inner, python_identity(
        parsed.to_bytes(), parsed.entry, limits, inner.capabilities))


class PooledPythonSandbox:
    """A pooled executor that the journal names as a sandboxed Python agent."""

    def __init__(self, inner: Executor, identity: AgentIdentity) -> None:
        self._inner = inner
        self._identity = identity

    def identity(self) -> AgentIdentity:
        return self._identity

    def step(self, request: StepRequest, host: HostCalls) -> StepResult:
        return self._inner.step(request, host)

    def close(self) -> None:
        self._inner.close()


class LocalPythonSandbox:
    """Runs a sandboxed Python agent in this process (``workers=0``): the same sandbox
    without the worker processes. Steps may run from several threads at once."""

    def __init__(self, package: AgentPackage, runtime: str | Path, *, name: str,
                 limits: Limits, capabilities: tuple[str, ...], wall_clock: bool = True
                 ) -> None:
        from workbench._pysandbox._sandbox import compile_agent

        self.name = name
        self.limits = limits
        self._timeout_s = limits.timeout_s if wall_clock else None
        self._agent = compile_agent(package.to_bytes(), source=name,
                                    capabilities=capabilities, runtime=str(runtime))
        self._identity = python_identity(package.to_bytes(), package.entry, limits,
                                         self._agent.capabilities)
        self._closed = threading.Event()

    def identity(self) -> AgentIdentity:
        return self._identity

    def step(self, request: StepRequest, host: HostCalls) -> StepResult:
        """One step in a fresh runtime instance. Raises RunClosed after close()."""
        from workbench._pysandbox._sandbox import run_step

        if self._closed.is_set():
            raise RunClosed(f"executor of agent {self.name!r}")
        return step_in_process(run_step, self._agent, request, host, self.limits,
                               self._timeout_s)

    def close(self) -> None:
        """Refuse further steps. Idempotent."""
        self._closed.set()

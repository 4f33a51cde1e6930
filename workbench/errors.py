"""Every error the workbench raises.

Each class inherits the built-in a caller would catch anyway and carries the context a
user needs (agent, step, limit, offset ...). Messages end with what to do next.
"""

from __future__ import annotations

__all__ = [
    "AgentBuildError",
    "AgentCrashed",
    "AgentFault",
    "AgentOutputError",
    "CapabilityError",
    "ConfigError",
    "FrameTooLarge",
    "InvalidModule",
    "JournalCorrupt",
    "JournalError",
    "JournalExists",
    "JournalInUse",
    "JournalVersionError",
    "LimitExceeded",
    "MemoryLimitExceeded",
    "ModelLoadError",
    "NondeterminismError",
    "OutOfFuel",
    "ProviderError",
    "RecordTooLarge",
    "RunBusy",
    "RunClosed",
    "StepTimeout",
    "ToolchainMissing",
    "WorkbenchError",
]


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class ConfigError(WorkbenchError, ValueError):
    """A run, agent, engine or model was configured with values that cannot work."""


class RunBusy(WorkbenchError, RuntimeError):
    """The run is busy: driven in the background, stepping on another thread, or in the
    middle of an agent's step (a call from inside an agent). Raised at once; nothing is
    written to the journal."""

    def __init__(self, action: str, hint: str = "call run.pause() or run.wait() first", *,
                 why: str = "the run is driven in the background") -> None:
        self.action = action
        self.why = why
        super().__init__(f"cannot {action} while {why}; {hint}")


class RunClosed(WorkbenchError, ValueError):
    """The run (or pool, or engine) is already closed."""

    def __init__(self, what: str = "run") -> None:
        self.what = what
        super().__init__(f"{what} already closed; create a new one")


# --- journal -----------------------------------------------------------------------------


class JournalError(WorkbenchError, OSError):
    """A journal cannot be written or read."""


class JournalCorrupt(JournalError):
    """Bytes in the journal are damaged somewhere other than a torn tail."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        super().__init__(
            f"journal {path!r} is corrupt at byte {offset}: {reason}; "
            "the records before this offset are intact (wb.read_journal(path, upto=offset))"
        )


class JournalExists(JournalError, FileExistsError):
    """A new run was given the path of a journal that already exists: journals are never
    overwritten unless asked."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"journal {path!r} already exists and a run never overwrites a journal; pass "
            "Run(journal=...) another path (or leave it out for a new folder under ./runs), "
            "or Run(..., overwrite=True) to replace it"
        )


class JournalInUse(JournalError, BlockingIOError):
    """Another live run holds the journal's lock (it is writing that journal)."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"journal {path!r} is in use by another live run (it holds the journal's lock); "
            "close that run first, or pass Run(journal=...) another path"
        )


class JournalVersionError(JournalCorrupt, ConfigError):
    """The journal was written in another format version than this workbench reads (its
    magic, or its run header's ``v``). A JournalCorrupt at offset 0 (its bytes cannot be
    read here) and a ConfigError (as replay has always raised for another ``v``)."""

    def __init__(self, path: str, found: object, supported: int, where: str) -> None:
        self.found = found
        self.supported = supported
        message = (f"journal {path!r} is format version {found!r} ({where}); this workbench "
                   f"reads version {supported}: open it with the workbench version that "
                   "wrote it")
        self.path, self.offset, self.reason = path, 0, message
        JournalError.__init__(self, message)


class RecordTooLarge(JournalError, ValueError):
    """A journal record would exceed the configured maximum record size."""

    def __init__(self, size: int, limit: int, what: str) -> None:
        self.size = size
        self.limit = limit
        self.what = what
        super().__init__(
            f"{what} encodes to {size} bytes, over the journal's record limit of {limit}; "
            "shrink the agent's state/output, or keep its Limits(max_state_bytes=..., "
            "max_output_bytes=...) under this limit so that a breach is a journaled fault"
        )


class NondeterminismError(WorkbenchError, AssertionError):
    """Replay produced a different event than the journal recorded."""

    def __init__(self, step: int, agent: str | None, field: str, expected: object,
                 got: object) -> None:
        self.step = step
        self.agent = agent
        self.field = field
        self.expected = expected
        self.got = got
        who = f"agent {agent!r}" if agent is not None else "the run"
        super().__init__(
            f"replay diverged at step {step}, {who}, field {field!r}: "
            f"expected {short_repr(expected)}, got {short_repr(got)}; the agent's code or its "
            "inputs changed, or it reads time/randomness outside the host calls"
        )


# --- agents --------------------------------------------------------------------------------


class AgentFault(WorkbenchError, RuntimeError):
    """An agent's step failed; the fault is journaled at that step.

    Raised to the caller only when the agent's fault policy is ``"fail"``.
    """

    kind = "fault"

    def __init__(self, agent: str, step: int, detail: str) -> None:
        self.agent = agent
        self.step = step
        self.detail = detail
        super().__init__(f"agent {agent!r} faulted at step {step} ({self.kind}): {detail}")


class OutOfFuel(AgentFault):
    """The agent used its whole fuel budget for one step (same instruction on every run)."""

    kind = "out_of_fuel"


class StepTimeout(AgentFault, TimeoutError):
    """The wall-clock backstop (epoch deadline) stopped a step. Not deterministic by nature."""

    kind = "timeout"


class MemoryLimitExceeded(AgentFault, MemoryError):
    """The guest asked for memory past its limit and then failed."""

    kind = "memory_limit"


class LimitExceeded(AgentFault):
    """State, output, message or token limits were breached."""

    kind = "limit"


class AgentOutputError(AgentFault, ValueError):
    """The agent returned output that is not valid (not UTF-8 JSON, wrong shape)."""

    kind = "malformed_output"


class AgentCrashed(AgentFault):
    """The worker process hosting the agent died during its step."""

    kind = "crashed"

    def __init__(self, agent: str, step: int, signal: int | None, detail: str = "") -> None:
        self.signal = signal
        sig = f"signal {signal}" if signal is not None else "exit"
        super().__init__(agent, step, f"worker died ({sig}) {detail}".strip())


class InvalidModule(WorkbenchError, ValueError):
    """A WebAssembly module failed to validate, compile or link."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(
            f"invalid agent module {source}: {reason}; rebuild it for ABI v1 (docs/abi.md)"
        )


class CapabilityError(InvalidModule):
    """The module imports a host function the agent was not granted."""

    def __init__(self, source: str, name: str, granted: tuple[str, ...], *,
                 via: str | None = None) -> None:
        self.name = name
        self.granted = granted
        self.via = via or f"host.{name}"  # the import that needs it, e.g. a WASI clock
        super().__init__(
            source,
            f"it imports {self.via} but the agent is granted only {list(granted)}; "
            f"add {name!r} to capabilities=... or remove the import",
        )


class FrameTooLarge(WorkbenchError, ValueError):
    """A message between the kernel and a worker process is over the frame size limit."""

    def __init__(self, size: int, limit: int, what: str) -> None:
        self.size = size
        self.limit = limit
        self.what = what
        super().__init__(
            f"{what} is {size} bytes, over the worker frame limit of {limit}; shrink the "
            "module, state or output, or run the agent in a pool with larger frames: "
            "Run(workers=wb.WorkerPool(max_frame=...))"
        )


# --- building agents -------------------------------------------------------------------


class ToolchainMissing(WorkbenchError, FileNotFoundError):
    """A guest toolchain (clang for wasm32-wasi, wasi-libc, AssemblyScript ...) is not installed."""

    def __init__(self, tool: str, install: str) -> None:
        self.tool = tool
        self.install = install
        super().__init__(f"{tool} is needed to build this agent but was not found; {install}")


class AgentBuildError(WorkbenchError, RuntimeError):
    """The guest compiler rejected an agent's source; ``output`` is what the compiler said."""

    def __init__(self, source: str, tool: str, output: str) -> None:
        self.source = source
        self.tool = tool
        self.output = output
        super().__init__(
            f"{tool} could not build agent {source}:\n{output.rstrip()}\n"
            "fix the source and run `workbench build-agent` again"
        )


# --- engine --------------------------------------------------------------------------------


class ModelLoadError(WorkbenchError, ValueError):
    """A model file could not be loaded or converted (malformed, hostile, unsupported)."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"cannot load model {source}: {reason}")


class ProviderError(WorkbenchError, RuntimeError):
    """The requested execution provider could not be used and strict_provider=True."""

    def __init__(self, requested: str, reason: str) -> None:
        self.requested = requested
        self.reason = reason
        super().__init__(
            f"execution provider {requested} is not usable: {reason}; "
            "pass strict_provider=False to fall back to the next provider"
        )


def short_repr(value: object, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class EngineFailure(WorkbenchError, RuntimeError):
    """The engine raised while serving a batch at the inference barrier: the step is
    abandoned (nothing of it is committed, a ``step_abandoned`` event says so) and this is
    raised from ``run.step()``. Its ``__cause__`` is the engine's own error; fix that (or
    pass ``engine_options={"providers": [...]}``) and step again."""


class HostCallFailed(WorkbenchError, RuntimeError):
    """Inside a worker process: the kernel's host function raised, so the agent's step is
    abandoned; the kernel re-raises the host's own exception from ``step``."""

"""workbench: deterministic multi-agent LLM inference, sandboxed, in the notebook.

>>> import workbench as wb
>>> run = wb.Run(seed=7, policy="round_robin")
"""

from typing import TYPE_CHECKING

from workbench._background import RunSummary
from workbench._events import (
    EVENT_KINDS,
    CommittedEvent,
    Event,
    LiveEvent,
    Subscription,
    events_from_journal,
)
from workbench._export import TraceExport, events_frame, export_trace
from workbench._journal import Journal, read_journal
from workbench._policy import DAG
from workbench._replay import ReplayReport, replay
from workbench._run import Run
from workbench._scheduler import StepReport
from workbench._types import Fault, Limits
from workbench.errors import (
    AgentCrashed,
    AgentFault,
    CapabilityError,
    ConfigError,
    InvalidModule,
    JournalCorrupt,
    LimitExceeded,
    MemoryLimitExceeded,
    ModelLoadError,
    NondeterminismError,
    OutOfFuel,
    ProviderError,
    RunBusy,
    WorkbenchError,
)

if TYPE_CHECKING:
    from workbench._engine._engine import Engine, Generation
    from workbench._wasm._pool import WorkerPool
    from workbench._widget import RunView, view

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The engine pulls in onnxruntime, the worker pool wasmtime; import them when asked for.
    if name in ("Engine", "Generation"):
        from workbench._engine import _engine

        return getattr(_engine, name)
    if name in ("view", "RunView"):  # the views pull in ipywidgets
        from workbench import _widget

        return getattr(_widget, name)
    if name == "WorkerPool":
        from workbench._wasm._pool import WorkerPool

        return WorkerPool
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


__all__ = [
    "DAG",
    "EVENT_KINDS",
    "AgentCrashed",
    "AgentFault",
    "CapabilityError",
    "CommittedEvent",
    "ConfigError",
    "Engine",
    "Event",
    "Fault",
    "Generation",
    "InvalidModule",
    "Journal",
    "JournalCorrupt",
    "LimitExceeded",
    "Limits",
    "LiveEvent",
    "MemoryLimitExceeded",
    "ModelLoadError",
    "NondeterminismError",
    "OutOfFuel",
    "ProviderError",
    "ReplayReport",
    "Run",
    "RunBusy",
    "RunSummary",
    "RunView",
    "StepReport",
    "Subscription",
    "TraceExport",
    "WorkbenchError",
    "WorkerPool",
    "__version__",
    "events_frame",
    "events_from_journal",
    "export_trace",
    "read_journal",
    "replay",
    "view",
]

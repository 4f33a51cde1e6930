"""workbench: deterministic multi-agent LLM inference, sandboxed, in the notebook.

>>> import workbench as wb
>>> run = wb.Run(seed=7, policy="round_robin")
"""

from workbench._events import Event, Subscription
from workbench._journal import Journal, read_journal
from workbench._policy import DAG
from workbench._replay import ReplayReport, replay
from workbench._run import Run, RunSummary
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

__version__ = "0.1.0"

__all__ = [
    "DAG",
    "AgentCrashed",
    "AgentFault",
    "CapabilityError",
    "ConfigError",
    "Event",
    "Fault",
    "InvalidModule",
    "Journal",
    "JournalCorrupt",
    "LimitExceeded",
    "Limits",
    "MemoryLimitExceeded",
    "ModelLoadError",
    "NondeterminismError",
    "OutOfFuel",
    "ProviderError",
    "ReplayReport",
    "Run",
    "RunBusy",
    "RunSummary",
    "StepReport",
    "Subscription",
    "WorkbenchError",
    "__version__",
    "read_journal",
    "replay",
]

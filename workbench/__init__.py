"""workbench: deterministic multi-agent LLM inference, sandboxed, in the notebook."""

from workbench.errors import (
    AgentCrashed,
    AgentFault,
    InvalidModule,
    JournalCorrupt,
    ModelLoadError,
    NondeterminismError,
)

__version__ = "0.1.0"

__all__ = [
    "AgentCrashed",
    "AgentFault",
    "InvalidModule",
    "JournalCorrupt",
    "ModelLoadError",
    "NondeterminismError",
    "__version__",
]

"""Sandboxed Python agents: a step function from a notebook, run as WebAssembly.

``run.add_agent(name, fn, sandbox=True)`` captures ``fn`` (``_capture``) as a package of
source (``_package``) and runs it in the one Python-agent runtime component
(``_runtime`` builds and caches it; ``guest/`` and ``agent.wit`` are what it is built
from) under wasmtime (``_sandbox``), in the worker pool or in-process (``_executor``).
See docs/python-agents.md.
"""

from workbench._pysandbox._capture import SANDBOX_MODULES, capture
from workbench._pysandbox._executor import KIND, sandboxed_executor
from workbench._pysandbox._package import is_package

__all__ = ["KIND", "SANDBOX_MODULES", "capture", "is_package", "sandboxed_executor"]

"""Helpers for tests that build the example agents with the real guest toolchains.

A missing toolchain FAILS the test (CI installs them with .ci/install-toolchains.sh); set
WORKBENCH_ALLOW_MISSING_TOOLCHAINS=1 to skip such tests on a machine without them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from workbench._types import JSON, InferResult
from workbench._wasm._build import build_agent
from workbench.errors import ToolchainMissing

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "agents"
ALLOW_MISSING = "WORKBENCH_ALLOW_MISSING_TOOLCHAINS"
MASK64 = (1 << 64) - 1


def build_or_fail(source: Path, output: Path) -> Path:
    """build_agent, turning a missing toolchain into a failure (or a skip, if allowed)."""
    try:
        return build_agent(source, output)
    except ToolchainMissing as err:
        if os.environ.get(ALLOW_MISSING) == "1":
            pytest.skip(f"{err} ({ALLOW_MISSING}=1)")
        pytest.fail(f"{err}\nInstall the toolchains with .ci/install-toolchains.sh, or set "
                    f"{ALLOW_MISSING}=1 to skip these tests locally.", pytrace=False)


class RecordingHost:
    """A HostCalls for one step that records every call, in order.

    ``random`` returns ``RANDOM_BASE * (index + 1)`` (mod 2**64, above 2**63 at index 0 so
    unsigned handling is exercised) and ``now`` returns ``step * 1e9 + index``, where index
    counts this step's random/now calls, as the real dispatcher does.
    """

    RANDOM_BASE = 0x9E3779B97F4A7C15

    def __init__(self, step: int = 0, infer_reply: Mapping[str, JSON] | None = None) -> None:
        self.step = step
        self.calls: list[tuple[str, Any]] = []
        self._index = 0
        self._reply = dict(infer_reply) if infer_reply is not None else InferResult(
            "too vague", (1, 2), "stop", "FakeProvider", prompt_tokens=9).to_json()

    def _next(self) -> int:
        index = self._index
        self._index += 1
        return index

    def random(self) -> int:
        value = (self.RANDOM_BASE * (self._next() + 1)) & MASK64
        self.calls.append(("random", value))
        return value

    def now(self) -> int:
        value = self.step * 1_000_000_000 + self._next()
        self.calls.append(("now", value))
        return value

    def log(self, text: str) -> None:
        self.calls.append(("log", text))

    def infer(self, request: Mapping[str, JSON]) -> dict[str, JSON]:
        self.calls.append(("infer", dict(request)))
        return dict(self._reply)

    def restart(self) -> None:
        self._index = 0
        self.calls.clear()

    def values(self, kind: str) -> list[Any]:
        return [value for name, value in self.calls if name == kind]

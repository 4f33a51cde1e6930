"""Execution-provider choice and fallback, at load time and at run time.

This machine has only the CPU provider, so GPU failures are injected through the engine's
session ``opener`` seam; the sessions themselves are real onnxruntime CPU sessions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest
from engine_helpers import tiny_model

from workbench._engine._engine import Engine
from workbench._engine._providers import (
    CPU,
    PREFERENCE,
    OrtSession,
    candidate_providers,
    default_opener,
)
from workbench._engine._session import session_options
from workbench._types import InferRequest
from workbench.errors import ConfigError, ProviderError

__all__ = ["tiny_model"]  # fixture used below

CUDA = "CUDAExecutionProvider"
REQUESTS = [InferRequest(agent=f"a{i}", index=0, prompt="hello world " * (i + 1),
                         max_tokens=10) for i in range(3)]


class FlakyGpuSession:
    """A real CPU session that claims to run on CUDA and fails its ``fail_at``-th run."""

    def __init__(self, inner: OrtSession, fail_at: int) -> None:
        self._inner = inner
        self._fail_at = fail_at
        self.runs = 0

    def get_providers(self) -> list[str]:
        return [CUDA, CPU]

    def run_with_iobinding(self, binding: Any, run_options: Any = None) -> None:
        self.runs += 1
        if self.runs == self._fail_at:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        self._inner.run_with_iobinding(binding, run_options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Opener:
    """Opens real CPU sessions; ``behaviour`` says what a CUDA open does."""

    def __init__(self, behaviour: str, fail_at: int = 3) -> None:
        self.behaviour = behaviour
        self.fail_at = fail_at
        self.opened: list[str] = []

    def __call__(self, path: Path, options: ort.SessionOptions, provider: str) -> OrtSession:
        self.opened.append(provider)
        if provider != CUDA:
            return default_opener(path, options, provider)
        cpu = ort.InferenceSession(str(path), options, providers=[CPU])
        if self.behaviour == "raise":
            raise RuntimeError("libcudnn.so.9: cannot open shared object file")
        if self.behaviour == "silent":  # onnxruntime-gpu without CUDA libraries
            return cpu
        return FlakyGpuSession(cpu, self.fail_at)


def _events() -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    seen: list[tuple[str, dict[str, Any]]] = []
    return seen, lambda kind, data: seen.append((kind, dict(data)))


def test_default_candidates_are_the_available_ones_in_preference_order() -> None:
    chosen = candidate_providers(None, strict=False)
    assert chosen[-1] == CPU
    assert chosen == [p for p in PREFERENCE if p in ort.get_available_providers()]


def test_requested_providers_get_cpu_appended_unless_strict() -> None:
    assert candidate_providers([CUDA], strict=False) == [CUDA, CPU]
    assert candidate_providers([CUDA], strict=True) == [CUDA]
    with pytest.raises(ConfigError, match="unknown execution provider"):
        candidate_providers(["WarpDriveExecutionProvider"], strict=False)
    with pytest.raises(ConfigError):
        candidate_providers([], strict=False)


def test_cpu_engine_reports_cpu_everywhere(tiny_model: Any) -> None:
    with Engine(tiny_model, threads=1) as engine:
        results = engine.infer_batch(REQUESTS)
        assert engine.describe()["provider"] == CPU
    assert {r.provider for r in results} == {CPU}


def test_unavailable_provider_falls_back_to_cpu_with_a_warning(tiny_model: Any) -> None:
    """Real onnxruntime: this CPU build does not offer CUDA at all."""
    seen, on_event = _events()
    with Engine(tiny_model, providers=[CUDA], threads=1, on_event=on_event) as engine:
        assert engine.provider == CPU
        assert engine.infer_batch(REQUESTS[:1])[0].provider == CPU
    assert seen[0][0] == "provider_fallback"
    assert seen[0][1]["failed"] == CUDA and seen[0][1]["next"] == CPU
    assert seen[0][1]["when"] == "load" and "does not offer" in seen[0][1]["reason"]


@pytest.mark.parametrize("behaviour", ["raise", "silent"])
def test_load_failure_falls_back_and_is_recorded(tiny_model: Any, behaviour: str) -> None:
    seen, on_event = _events()
    opener = Opener(behaviour)
    with Engine(tiny_model, providers=[CUDA], threads=1, on_event=on_event,
                opener=opener) as engine:
        results = engine.infer_batch(REQUESTS)
    assert opener.opened == [CUDA, CPU]
    assert {r.provider for r in results} == {CPU}
    assert [kind for kind, _ in seen] == ["provider_fallback"]
    expected = "libcudnn" if behaviour == "raise" else "fell back to CPUExecutionProvider"
    assert expected in seen[0][1]["reason"]


@pytest.mark.parametrize("behaviour", ["raise", "silent"])
def test_strict_provider_raises_at_load(tiny_model: Any, behaviour: str) -> None:
    with pytest.raises(ProviderError) as info:
        Engine(tiny_model, providers=[CUDA], strict_provider=True, opener=Opener(behaviour))
    assert info.value.requested == CUDA
    assert "strict_provider=False" in str(info.value)


def test_run_time_failure_falls_back_and_reruns_the_group(tiny_model: Any) -> None:
    with Engine(tiny_model, threads=1) as cpu_engine:
        expected = cpu_engine.infer_batch(REQUESTS)
    seen, on_event = _events()
    opener = Opener("flaky", fail_at=5)  # fails during the decode steps
    streamed: list[int] = []
    with Engine(tiny_model, providers=[CUDA], threads=1, on_event=on_event,
                opener=opener) as engine:
        assert engine.provider == CUDA
        results = engine.infer_batch(REQUESTS, on_token=lambda a, i, t, p: streamed.append(t))
        assert engine.provider == CPU
        again = engine.infer_batch(REQUESTS)
    assert [r.tokens for r in results] == [r.tokens for r in expected]
    assert {r.provider for r in results + again} == {CPU}
    kinds = [kind for kind, _ in seen]
    assert kinds == ["provider_fallback", "stream_restart"]
    assert seen[0][1]["when"] == "run" and "illegal memory access" in seen[0][1]["reason"]
    assert len(streamed) > sum(len(r.tokens) for r in results)  # tokens before the failure


def test_groups_before_a_failure_keep_the_provider_that_ran_them(tiny_model: Any) -> None:
    opener = Opener("flaky", fail_at=100)
    with Engine(tiny_model, providers=[CUDA], threads=1, max_batch=1, opener=opener) as engine:
        results = engine.infer_batch(REQUESTS * 4)
    providers = [r.provider for r in results]
    assert providers[0] == CUDA and providers[-1] == CPU
    assert providers == sorted(providers, key=lambda p: p == CPU)  # one switch, never back


def test_strict_provider_raises_at_run_time(tiny_model: Any) -> None:
    with Engine(tiny_model, providers=[CUDA], strict_provider=True, threads=1,
                opener=Opener("flaky", fail_at=2)) as engine, pytest.raises(ProviderError) as info:
        engine.infer_batch(REQUESTS)
    assert "failed at run time" in str(info.value)


def test_session_options_fix_the_thread_count() -> None:
    options = session_options(3)
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 1


def test_failure_of_the_last_provider_raises(tiny_model: Any) -> None:
    class BrokenCpu(FlakyGpuSession):
        def get_providers(self) -> list[str]:
            return [CPU]

    def opener(path: Path, options: ort.SessionOptions, provider: str) -> OrtSession:
        return BrokenCpu(default_opener(path, options, provider), fail_at=1)

    with Engine(tiny_model, threads=1, opener=opener) as engine, \
            pytest.raises(ProviderError, match="no provider left"):
        engine.infer_batch(REQUESTS)

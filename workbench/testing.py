"""Fakes and helpers for testing agents and runs (yours and ours).

- :class:`PythonAgent`: run a plain Python step function in-process.
- :class:`FakeEngine`: a deterministic stand-in for the model; records every batch.
- :func:`inject_jitter`: random delays in agent execution and host calls, to show that a
  run's journal does not depend on timing.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from workbench._python_agent import PythonAgent
from workbench._types import (
    JSON,
    AgentIdentity,
    Executor,
    HostCalls,
    InferRequest,
    InferResult,
    StepRequest,
    StepResult,
    TokenCallback,
)

__all__ = ["FakeEngine", "PythonAgent", "inject_jitter"]

_WORDS = ("red", "green", "blue", "amber", "violet", "teal", "ochre", "indigo", "plum",
          "sage", "slate", "coral")


class FakeEngine:
    """Generates words from a hash of the prompt (and of the sampling key when sampling).

    Same request → same text, whatever the batch. ``batches`` lists the agents of every
    batch served, in order, so tests can assert batch composition.
    """

    def __init__(self, *, provider: str = "FakeProvider") -> None:
        self.provider = provider
        self.batches: list[list[str]] = []
        self._lock = threading.Lock()

    def describe(self) -> dict[str, JSON]:
        return {"model": "fake", "model_hash": "0" * 16, "provider": self.provider}

    def infer_batch(self, requests: Sequence[InferRequest],
                    on_token: TokenCallback | None = None) -> list[InferResult]:
        with self._lock:
            self.batches.append([r.agent for r in requests])
        return [self._one(r, on_token) for r in requests]

    def _one(self, r: InferRequest, on_token: TokenCallback | None) -> InferResult:
        prompt = r.prompt if r.prompt is not None else "\n".join(
            f"{m['role']}: {m['content']}" for m in (r.messages or ()))
        salt = str(r.sampling_key) if r.temperature > 0 else ""
        words, tokens = [], []
        for i in range(r.max_tokens):
            h = hashlib.sha256(f"{prompt}|{salt}|{i}".encode()).digest()
            token = h[0] % len(_WORDS)
            words.append(_WORDS[token])
            tokens.append(token)
            if on_token is not None:
                on_token(r.agent, r.index, token, _WORDS[token])
        return InferResult(" ".join(words), tuple(tokens), "length", self.provider,
                           prompt_tokens=len(prompt.split()))

    def close(self) -> None:
        """Nothing to release."""


class _JitterHost:
    def __init__(self, inner: HostCalls, jitter: _Jitter) -> None:
        self._inner = inner
        self._jitter = jitter

    def infer(self, request: Mapping[str, JSON]) -> dict[str, JSON]:
        self._jitter.sleep()
        return self._inner.infer(request)

    def log(self, text: str) -> None:
        self._jitter.sleep()
        self._inner.log(text)

    def random(self) -> int:
        self._jitter.sleep()
        return self._inner.random()

    def now(self) -> int:
        self._jitter.sleep()
        return self._inner.now()

    def restart(self) -> None:
        self._inner.restart()


class _Jitter:
    def __init__(self, seed: int, max_delay: float) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._max = max_delay

    def sleep(self) -> None:
        with self._lock:
            delay = self._rng.random() * self._max
        time.sleep(delay)


class _JitteredExecutor:
    def __init__(self, inner: Executor, jitter: _Jitter) -> None:
        self._inner = inner
        self._jitter = jitter

    def identity(self) -> AgentIdentity:
        return self._inner.identity()

    def step(self, request: StepRequest, host: HostCalls) -> StepResult:
        self._jitter.sleep()
        result = self._inner.step(request, _JitterHost(host, self._jitter))
        self._jitter.sleep()
        return result

    def close(self) -> None:
        self._inner.close()


def inject_jitter(run: Any, *, seed: int, max_delay: float = 0.002) -> None:
    """Delay every agent step and host call of ``run`` by a random 0..max_delay seconds.

    The delays come from their own generator (``seed``), never from the run's seed, so they
    change completion order and timing only. Applies from the run's next step on.
    """
    jitter = _Jitter(seed, max_delay)

    def wrap(executor: Executor) -> Executor:
        return _JitteredExecutor(executor, jitter)

    run._wrap = wrap
    if run._scheduler is not None:  # already started (a send or a step)
        run._scheduler._wrap = wrap

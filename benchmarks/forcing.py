"""Teacher forcing through the engine's real decode loop (shared by the benchmark scripts)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from workbench._engine import _decode
from workbench._engine._engine import Engine
from workbench._types import InferRequest


def forced_logits(engine: Engine, request: InferRequest, forced: tuple[int, ...]) -> Any:
    """Logits at each position of ``forced``, through the real decode loop: the sampler is
    replaced for the call so that ``forced`` is the continuation whatever the logits say."""
    rows: list[Any] = []

    def force(logits: Any, params: Any, position: int) -> int:
        rows.append(np.array(logits, np.float32))
        return forced[position]

    original = vars(_decode)["choose_token"]
    setattr(_decode, "choose_token", force)  # noqa: B010 (a test seam, restored below)
    try:
        engine.infer_batch([dataclasses.replace(request, max_tokens=len(forced))])
    finally:
        setattr(_decode, "choose_token", original)  # noqa: B010
    return np.stack(rows)

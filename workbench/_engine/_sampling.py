"""Choosing the next token: greedy, or seeded temperature / top-k / top-p sampling.

Sampling never touches global random state. The uniform draw for a token is a pure function
of ``(sampling_key, position)`` — a Philox counter-based generator keyed by the request's
sampling key, at counter ``position`` — so a sequence draws the same tokens alone or in a
batch, after a crash, in a replay or in a fork. Probabilities are computed in float64 from the
float32 logits with a fixed operation order, so the same logits give the same token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["SamplingParams", "TextStream", "choose_token", "uniform"]

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick tokens. ``temperature == 0`` is greedy (the key is then unused).

    ``top_k == 0`` and ``top_p == 1`` disable those filters. Raises ValueError on values
    outside their ranges.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    key: int = 0

    def __post_init__(self) -> None:
        if not (self.temperature >= 0.0 and np.isfinite(self.temperature)):
            raise ValueError(f"temperature must be finite and >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def uniform(key: int, position: int) -> float:
    """A uniform float in [0, 1) for (key, position): the Philox block at that counter."""
    gen = np.random.Philox(key=key & _MASK64, counter=[position & _MASK64, 0, 0, 0])
    raw = int(gen.random_raw())
    return (raw >> 11) * (1.0 / (1 << 53))


def choose_token(logits: npt.NDArray[np.float32], params: SamplingParams, position: int) -> int:
    """The token at ``position`` (the index of the generated token, from 0) given ``logits``.

    Greedy picks the lowest index among equal maxima. Sampling keeps the ``top_k`` highest
    logits (ties broken by index), applies temperature, keeps the smallest prefix whose
    probability reaches ``top_p`` (at least one token) and inverts the cumulative sum at
    :func:`uniform` (key, position).
    """
    if params.greedy:
        return int(np.argmax(logits))
    order = _candidates(logits, params)
    scaled = logits[order].astype(np.float64) / params.temperature
    probs = np.exp(scaled - scaled.max())
    cumulative = np.cumsum(probs / probs.sum())
    if params.top_p < 1.0:
        keep = int(np.searchsorted(cumulative, params.top_p, side="left")) + 1
        keep = min(keep, order.size)
        order, cumulative = order[:keep], cumulative[:keep]
    draw = uniform(params.key, position) * cumulative[-1]
    pick = int(np.searchsorted(cumulative, draw, side="right"))
    return int(order[min(pick, order.size - 1)])


def _candidates(logits: npt.NDArray[np.float32], params: SamplingParams) -> npt.NDArray[np.intp]:
    """Token ids to sample from: sorted by (-logit, id) when top-k/top-p need an order,
    else every id in id order (no sort needed)."""
    k = params.top_k if 0 < params.top_k < logits.size else 0
    if k:
        threshold = np.partition(logits, logits.size - k)[logits.size - k]
        above = np.flatnonzero(logits > threshold)
        tied = np.flatnonzero(logits == threshold)[: k - above.size]
        ids = np.concatenate([above, tied])
        return ids[np.lexsort((ids, -logits[ids]))]
    if params.top_p < 1.0:
        return np.argsort(-logits, kind="stable")
    return np.arange(logits.size)


class TextStream:
    """Incremental detokenisation with stop strings, for one sequence.

    :meth:`push` takes each generated token and returns the text that can be shown now:
    text is held back while it ends in an incomplete UTF-8 character (``"\\ufffd"``) or in a
    prefix of a stop string, so no streamed piece is ever taken back. Decoding looks at a
    window of the last few tokens only, so each push costs the same however long the text.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str], stop: Sequence[str] = ()) -> None:
        self._decode = decode
        self._stop = tuple(s for s in stop if s)
        self._tokens: list[int] = []
        self._prefix = 0  # window start
        self._read = 0  # tokens whose text has been taken from the window
        self._held = ""  # decoded text not yet emitted (may start a stop string)
        self.text = ""  # everything emitted so far
        self.stopped = False

    def push(self, token: int) -> str:
        """Add ``token``; return the new text to emit ("" if none yet). Sets :attr:`stopped`
        when a stop string completes; the text then ends just before it."""
        if self.stopped:
            raise ValueError("stream already stopped at a stop string")
        self._tokens.append(token)
        window = self._decode(self._tokens[self._prefix:])
        if window.endswith("\ufffd"):
            return ""
        before = self._decode(self._tokens[self._prefix:self._read])
        self._prefix, self._read = self._read, len(self._tokens)
        return self._emit(self._held + window[len(before):])

    def finish(self) -> str:
        """End of generation without a stop string: release any held-back text."""
        piece, self._held = self._held, ""
        self.text += piece
        return piece

    def _emit(self, pending: str) -> str:
        cut = self._first_stop(pending)
        if cut is not None:
            self.stopped = True
            self._held = ""
            self.text += pending[:cut]
            return pending[:cut]
        hold = self._stop_prefix_len(pending)
        ready = pending[: len(pending) - hold]
        self._held = pending[len(pending) - hold:]
        self.text += ready
        return ready

    def _first_stop(self, text: str) -> int | None:
        hits = [i for i in (text.find(s) for s in self._stop) if i >= 0]
        return min(hits) if hits else None

    def _stop_prefix_len(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for s in self._stop:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best

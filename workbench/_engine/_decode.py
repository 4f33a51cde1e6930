"""The decode loop: prefill each sequence, then decode all active sequences as one batch.

For graphs with a shared KV buffer (GroupQueryAttention, see ``_graph.py``), a group of at
most ``max_batch`` sequences gets one float buffer per layer and key/value of shape
``[rows, kv_heads, M, head_dim]``, ``M`` = the longest (prompt + max_tokens) of the group
(capped at the model's positions), preallocated once and bound with IO binding as both past
and present, so onnxruntime writes new keys in place and nothing is copied per step.

* Prefill: each sequence alone (B = 1), in one pass over its prompt, or in chunks of
  ``prefill_chunk`` tokens when that is configured (split prefill differs in the last bits,
  which is why it is part of the journaled engine configuration).
* Decode: one ``[rows, 1]`` step for all active sequences, in agent order, with a
  right-padded mask as wide as the longest row (attention never looks past it). A sequence that
  finishes leaves the batch: the rows behind it move up (one copy per finished sequence).
* Batching does not change a sequence's tokens. Every operator of the graph computes each
  row on its own, except that onnxruntime's MatMulNBits takes a separate kernel for a single
  row, which rounds differently on some instruction sets (see docs/engine.md). So decode steps
  always run at least ``min_rows`` rows (default 2): when fewer sequences are active, padding
  rows fill the batch. ``tests/test_engine_batching.py`` checks batched against solo decoding
  token for token, natively and under emulated instruction sets.

Graphs without a shared buffer (exported by other tools) decode each sequence alone with a
growing cache, fed as ``min_rows`` identical rows so that they take the same kernels as the
shared-buffer path: slower, and trivially batch-independent.

A session failure raises :class:`ProviderRunError` out of :func:`run_group`; the engine then
switches provider and runs the group again from its start.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from .._types import InferRequest, TokenCallback
from ._sampling import SamplingParams, TextStream, choose_token
from ._session import EngineSession, GraphLayout

__all__ = ["DecodeStats", "Slot", "run_group"]

Finish = Literal["stop", "length", "error"]


@dataclass
class Slot:
    """One request's sequence while it is decoded. ``capacity``: KV slots it may fill."""

    request: InferRequest
    prompt: list[int]
    params: SamplingParams
    stream: TextStream
    capacity: int
    tokens: list[int] = field(default_factory=list)
    length: int = 0  # tokens in the KV cache
    pending: int = -1  # the next token to feed
    finish: Finish | None = None
    prefill_s: float = 0.0  # wall-clock seconds of this sequence's prefill (display only)
    decode_s: float = 0.0  # from the group's first decode step to this sequence's last

    def reset(self, stream: TextStream) -> None:
        """Forget generated tokens (the group is run again on another provider)."""
        self.stream, self.tokens, self.length, self.pending, self.finish = (
            stream, [], 0, -1, None)
        self.prefill_s = self.decode_s = 0.0


@dataclass
class DecodeStats:
    """Wall-clock timings of one group (for benchmarks and :class:`Generation`; never
    journaled)."""

    prefill_s: float = 0.0
    prefill_tokens: int = 0
    decode_s: float = 0.0
    decode_steps: int = 0
    decode_tokens: int = 0


@dataclass
class _Context:
    session: EngineSession
    eos: frozenset[int]
    on_token: TokenCallback | None
    prefill_chunk: int | None
    min_rows: int
    stats: DecodeStats


def run_group(session: EngineSession, slots: Sequence[Slot], *, eos: Sequence[int],
              on_token: TokenCallback | None = None, prefill_chunk: int | None = None,
              min_rows: int = 2) -> DecodeStats:
    """Generate for every slot (at most the engine's max_batch), filling their tokens,
    text and finish reason. Decode steps run at least ``min_rows`` rows (padding rows fill
    in; 1 is faster but not batch-invariant on every CPU). Raises :class:`ProviderRunError`
    when the session fails."""
    ctx = _Context(session, frozenset(eos), on_token, prefill_chunk, min_rows, DecodeStats())
    if session.layout.shared_kv:
        _SharedKvGroup(ctx, slots).run()
    else:
        for slot in slots:
            _run_growing(ctx, slot)
    return ctx.stats


def _accept(ctx: _Context, slot: Slot, token: int) -> None:
    """Record a generated token, stream its text, and decide whether the slot is done."""
    if token in ctx.eos:
        slot.finish = "stop"
        _stream(ctx, slot, token, slot.stream.finish())
        return
    slot.tokens.append(token)
    piece = slot.stream.push(token)
    if slot.stream.stopped:
        slot.finish = "stop"
    elif len(slot.tokens) >= slot.request.max_tokens or slot.length >= slot.capacity:
        slot.finish = "length"
        piece += slot.stream.finish()
    slot.pending = token
    _stream(ctx, slot, token, piece)


def _stream(ctx: _Context, slot: Slot, token: int, piece: str) -> None:
    if ctx.on_token is not None:
        ctx.on_token(slot.request.agent, slot.request.index, token, piece)


def _next_token(slot: Slot, logits: npt.NDArray[np.float32]) -> int:
    return choose_token(logits, slot.params, len(slot.tokens))


class _SharedKvGroup:
    """A group's preallocated buffers and bindings (see the module docstring)."""

    def __init__(self, ctx: _Context, slots: Sequence[Slot]) -> None:
        layout: GraphLayout = ctx.session.layout
        self.ctx = ctx
        self.layout = layout
        self.rows: list[Slot] = list(slots)
        width = max(s.capacity for s in slots)
        height = max(len(slots), ctx.min_rows)
        shape = (height, layout.kv_heads, width, layout.head_dim)
        self.kv = [np.zeros(shape, layout.kv_dtype) for _ in range(2 * layout.num_layers)]
        self.width = width
        self.lengths = np.zeros(height, np.int64)  # tokens in each row's buffer
        self.columns = np.arange(width, dtype=np.int64)
        self.ids = np.zeros((height, 1), np.int64)
        self.logits = np.zeros((height, 1, layout.vocab_size), np.float32)
        self.binding: Any = None
        self._bound_rows = 0

    def run(self) -> None:
        for row, slot in enumerate(self.rows):
            self._prefill(row, slot)
        started = time.perf_counter()
        while self._compact():
            self._step()
            now = time.perf_counter() - started
            for slot in self.rows:
                slot.decode_s = now
        self.ctx.stats.decode_s += time.perf_counter() - started

    def _bind_kv(self, binding: Any, rows: slice) -> None:
        for j, buf in enumerate(self.kv):
            value = ort.OrtValue.ortvalue_from_numpy(buf[rows])
            layer, part = divmod(j, 2)
            kind = ("key", "value")[part]
            binding.bind_ortvalue_input(f"past_key_values.{layer}.{kind}", value)
            binding.bind_ortvalue_output(f"present.{layer}.{kind}", value)

    def _prefill(self, row: int, slot: Slot) -> None:
        started = time.perf_counter()
        prompt = np.asarray(slot.prompt, np.int64)[None, :]
        size = self.ctx.prefill_chunk or prompt.shape[1]
        binding = self.ctx.session.session.io_binding()
        self._bind_kv(binding, slice(row, row + 1))
        last: npt.NDArray[np.float32] | None = None
        for start in range(0, prompt.shape[1], size):
            chunk = np.ascontiguousarray(prompt[:, start:start + size])
            end = start + chunk.shape[1]
            if size >= prompt.shape[1]:
                mask = np.ones((1, end), np.int64)
            else:
                mask = np.zeros((1, self.width), np.int64)
                mask[0, :end] = 1
            logits = np.empty((1, chunk.shape[1], self.layout.vocab_size), np.float32)
            binding.bind_ortvalue_input("input_ids", ort.OrtValue.ortvalue_from_numpy(chunk))
            binding.bind_ortvalue_input("attention_mask", ort.OrtValue.ortvalue_from_numpy(mask))
            binding.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(logits))
            self.ctx.session.run(binding)
            last = logits[0, -1]
        assert last is not None
        slot.length = prompt.shape[1]
        stats = self.ctx.stats
        slot.prefill_s = time.perf_counter() - started
        stats.prefill_s += slot.prefill_s
        stats.prefill_tokens += slot.length
        _accept(self.ctx, slot, _next_token(slot, last))

    def _compact(self) -> bool:
        """Drop finished rows (moving the rest up, order kept); False when none is left."""
        keep = [i for i, s in enumerate(self.rows) if s.finish is None]
        if not keep:
            return False
        if len(keep) < len(self.rows) or self.binding is None:
            if keep != list(range(len(keep))):
                for buf in self.kv:
                    buf[: len(keep)] = buf[keep]
            self.rows = [self.rows[i] for i in keep]
            self._rebind(self._pad(len(keep)))
        return True

    def _pad(self, n: int) -> int:
        """Rows to run for ``n`` sequences: padding rows hold one token at slot 0, which
        each step overwrites (their logits are ignored)."""
        height = max(n, self.ctx.min_rows)
        self.ids[n:height] = 0
        self.lengths[n:height] = 0
        return height

    def _mask(self) -> npt.NDArray[np.int64]:
        """Right-padded mask, as wide as the longest row after this step (each row's buffer
        holds ``length`` tokens and gets one more)."""
        total = self.lengths[: self._bound_rows] + 1
        width = int(total.max())
        return (self.columns[None, :width] < total[:, None]).astype(np.int64)

    def _rebind(self, n: int) -> None:
        binding = self.ctx.session.session.io_binding()
        self._bind_kv(binding, slice(0, n))
        binding.bind_ortvalue_input("input_ids", ort.OrtValue.ortvalue_from_numpy(self.ids[:n]))
        binding.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(self.logits[:n]))
        self.binding = binding
        self._bound_rows = n

    def _step(self) -> None:
        for r, slot in enumerate(self.rows):
            self.ids[r, 0] = slot.pending
            self.lengths[r] = slot.length
        self.binding.bind_ortvalue_input("attention_mask",
                                         ort.OrtValue.ortvalue_from_numpy(self._mask()))
        self.ctx.session.run(self.binding)
        stats = self.ctx.stats
        stats.decode_steps += 1
        stats.decode_tokens += len(self.rows)
        for r, slot in enumerate(self.rows):
            slot.length += 1
            _accept(self.ctx, slot, _next_token(slot, self.logits[r, 0]))


def _run_growing(ctx: _Context, slot: Slot) -> None:
    """Decode one sequence on a graph whose cache grows by concatenation (plain run)."""
    layout = ctx.session.layout
    past = [np.zeros((1, layout.kv_heads, 0, layout.head_dim), layout.kv_dtype)
            for _ in range(2 * layout.num_layers)]
    feed = np.asarray(slot.prompt, np.int64)[None, :]
    started = time.perf_counter()
    while True:
        rows = 1 if slot.length == 0 else ctx.min_rows  # prefill alone, as the shared path
        logits, past = _growing_step(ctx.session, layout, feed, past, slot.length, rows)
        slot.length += feed.shape[1]
        now = time.perf_counter()
        if feed.shape[1] == len(slot.prompt) and not slot.tokens:
            slot.prefill_s = now - started
            ctx.stats.prefill_s += now - started
            ctx.stats.prefill_tokens += feed.shape[1]
        else:
            slot.decode_s += now - started
            ctx.stats.decode_s += now - started
            ctx.stats.decode_steps += 1
            ctx.stats.decode_tokens += 1
        started = now
        _accept(ctx, slot, _next_token(slot, logits))
        if slot.finish is not None:
            return
        feed = np.array([[slot.pending]], np.int64)


def _growing_step(session: EngineSession, layout: GraphLayout, ids: npt.NDArray[np.int64],
                  past: list[npt.NDArray[Any]], length: int, rows: int
                  ) -> tuple[npt.NDArray[np.float32], list[npt.NDArray[Any]]]:
    """One pass over ``ids`` [1, S], fed as ``rows`` identical rows; returns the last
    position's logits and the first row's cache (nothing is copied for one row)."""

    def rowed(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return array if rows == 1 else np.repeat(array, rows, axis=0)

    total = length + ids.shape[1]
    names = ["logits"]
    feeds: dict[str, npt.NDArray[Any]] = {"input_ids": rowed(ids),
                                          "attention_mask": np.ones((rows, total), np.int64)}
    if layout.has_position_ids:
        feeds["position_ids"] = rowed(np.arange(length, total, dtype=np.int64)[None, :])
    for j, buf in enumerate(past):
        layer, part = divmod(j, 2)
        kind = ("key", "value")[part]
        feeds[f"past_key_values.{layer}.{kind}"] = rowed(buf)
        names.append(f"present.{layer}.{kind}")
    outputs = session.run_plain(names, feeds)
    presents = outputs[1:1 + len(past)]
    return (outputs[0][0, -1].astype(np.float32),
            presents if rows == 1 else [np.ascontiguousarray(p[:1]) for p in presents])

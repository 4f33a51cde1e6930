"""One model's onnxruntime session: options, provider chain and what the graph expects.

The graph is introspected rather than assumed, so converted models (GroupQueryAttention with a
shared past/present buffer) and models exported by other tools (a growing KV cache, with or
without ``position_ids``) both load. See ``_graph.py`` for the calling convention.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from ..errors import ModelLoadError
from ._providers import EventCallback, OpenedSession, OrtSession, ProviderChain, SessionOpener
from ._rowprobe import NBitsConfig

__all__ = ["EngineSession", "GraphLayout", "GraphScan", "ProviderRunError", "inspect_layout",
           "scan_graph", "session_options"]

_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")
_DTYPES: dict[str, type[np.floating[Any]]] = {"tensor(float)": np.float32,
                                              "tensor(float16)": np.float16}


class ProviderRunError(RuntimeError):
    """A session run failed; the engine falls back to the next provider and retries."""

    def __init__(self, provider: str, cause: BaseException) -> None:
        self.provider = provider
        self.cause = cause
        super().__init__(f"{provider} failed at run time: {type(cause).__name__}: {cause}")


@dataclass(frozen=True)
class GraphLayout:
    """What the decode loop must feed. ``shared_kv``: GroupQueryAttention graph whose KV
    buffer can be bound as both past and present (converted models); else the cache grows
    by concatenation and sequences are decoded one at a time."""

    num_layers: int
    kv_heads: int
    head_dim: int
    kv_dtype: type[np.floating[Any]]
    vocab_size: int
    has_position_ids: bool
    shared_kv: bool


def session_options(threads: int) -> ort.SessionOptions:
    """Fixed thread counts (part of the journaled engine config: results depend on them)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def inspect_layout(session: OrtSession, onnx_path: Path, vocab_hint: int | None,
                   gqa: bool | None = None) -> GraphLayout:
    """Read the inputs/outputs of ``session``. Raises :class:`ModelLoadError` when the graph
    does not follow the decoder contract (input_ids, attention_mask, past/present pairs).
    ``gqa`` is :func:`scan_graph`'s answer when the caller already has it."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    missing = [n for n in ("input_ids", "attention_mask") if n not in inputs]
    if missing or "logits" not in outputs:
        raise ModelLoadError(str(onnx_path), f"graph lacks {missing or ['logits']}; expected "
                             "a decoder with input_ids/attention_mask inputs and logits output")
    pasts = sorted((int(m[1]), m[2]) for m in map(_PAST.match, inputs) if m)
    layers = len(pasts) // 2
    if layers == 0 or pasts != [(i, p) for i in range(layers) for p in ("key", "value")]:
        raise ModelLoadError(str(onnx_path), "past_key_values.{i}.key|value inputs are "
                             "missing or incomplete")
    past = inputs["past_key_values.0.key"]
    from ._model import kv_cache_dims  # a symbolic head size comes from the folder's config

    kv_heads, head_dim = kv_cache_dims(past.shape, onnx_path)
    vocab = outputs["logits"].shape[-1]
    if not isinstance(vocab, int):
        if vocab_hint is None:
            raise ModelLoadError(str(onnx_path), "logits have no fixed vocabulary dimension")
        vocab = vocab_hint
    dtype = _DTYPES.get(past.type)
    if dtype is None:
        raise ModelLoadError(str(onnx_path), f"unsupported KV cache type {past.type}")
    shared = gqa if gqa is not None else scan_graph(onnx_path).gqa
    return GraphLayout(layers, kv_heads, head_dim, dtype, vocab, "position_ids" in inputs,
                       shared)


@dataclass(frozen=True)
class GraphScan:
    """What the graph itself says: GroupQueryAttention (a KV buffer bound as past and
    present) and the configurations of its MatMulNBits nodes (see ``_rowprobe``)."""

    gqa: bool
    matmul_nbits: frozenset[NBitsConfig]


def scan_graph(onnx_path: Path) -> GraphScan:
    """Parses the whole graph (weights that are inside it too), so call it before opening a
    session to keep peak memory down."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    configs = set()
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            a = {x.name: x.i for x in node.attribute}
            configs.add((a.get("K", 0), a.get("N", 0), a.get("bits", 4), a.get("block_size", 32),
                         a.get("accuracy_level", 0)))
    return GraphScan(any(node.op_type == "GroupQueryAttention" for node in model.graph.node),
                     frozenset(configs))


class EngineSession:
    """The session that runs now, and the fallback to the next provider when it fails."""

    def __init__(self, onnx_path: Path, *, candidates: Sequence[str], threads: int,
                 strict: bool, opener: SessionOpener, on_event: EventCallback | None,
                 vocab_hint: int | None = None) -> None:
        self.threads = threads
        self.scan = scan_graph(onnx_path)  # before the session: the graph is freed first

        def options_for() -> ort.SessionOptions:
            return session_options(threads)

        self._chain = ProviderChain(onnx_path, options_for, candidates, strict=strict,
                                    opener=opener, on_event=on_event)
        self.layout = inspect_layout(self._chain.current.session, onnx_path, vocab_hint,
                                     self.scan.gqa)

    @property
    def provider(self) -> str:
        return self._chain.provider

    @property
    def session(self) -> OrtSession:
        return self._chain.current.session

    def run(self, binding: Any) -> None:
        """Run with IO binding; a failure becomes :class:`ProviderRunError`."""
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:  # onnxruntime raises several unrelated types here
            raise ProviderRunError(self.provider, exc) from exc

    def run_plain(self, outputs: list[str], feeds: dict[str, Any]) -> list[Any]:
        """``session.run`` with numpy feeds (graphs without a shared KV buffer)."""
        try:
            result: list[Any] = self.session.run(outputs, feeds)
        except Exception as exc:  # onnxruntime raises several unrelated types here
            raise ProviderRunError(self.provider, exc) from exc
        return result

    def close(self) -> None:
        """Drop the onnxruntime session (its memory is freed once nothing else holds it)."""
        self._chain.release()

    def fall_back(self, error: ProviderRunError) -> OpenedSession:
        """Switch to the next provider after ``error``. Raises ProviderError when none is
        left or the engine is strict."""
        return self._chain.fall_back(error.cause)

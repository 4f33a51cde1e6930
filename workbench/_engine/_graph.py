"""Build the ONNX graph of a Llama-family decoder from (losslessly encoded) weights.

Both the GGUF converter (``_convert.py``) and the tiny test models (``_tiny.py``) go through
:func:`build_llama_graph`, so tests exercise the very graph users run.

Calling convention (what the decode loop must pass)
---------------------------------------------------
Inputs::

    input_ids                   int64   [B, S]
    attention_mask              int64   [B, T]    1 for real tokens (past + new), right-padded
    past_key_values.{i}.key     float32 [B, kv_heads, P, head_dim]     i = 0 .. num_layers-1
    past_key_values.{i}.value   float32 [B, kv_heads, P, head_dim]

Outputs::

    logits                      float32 [B, S, vocab]
    present.{i}.key|value       float32 [B, kv_heads, max(T, P), head_dim]

Inside, attention is ``com.microsoft.GroupQueryAttention`` (rotary applied inside, interleaved
pairs, as llama.cpp stores q/k rows) with ``seqlens_k = ReduceSum(attention_mask) - 1`` and
``total_sequence_length = T``. So row ``b``'s length is the number of ones in its mask row,
whatever their position: **masks must be right-padded (ones first, then zeros)**. The new
tokens of row ``b`` get positions ``L_b - S .. L_b - 1`` (``L_b`` = ones in the row), their
keys/values are written at those slots of ``present``, and they attend to slots ``0 .. L_b-1``.

Layout, chosen for speed without changing a bit of the results: hidden states are 2-D rows
``[B*S, hidden]`` (only attention's input and output are reshaped to 3-D). Matrices that read
the same input and share an encoding run as one packed product: q/k/v (GroupQueryAttention
takes the packed QKV tensor) and gate/up (then Split). A Q4_1 product's block-minimum
correction reuses one block sum of its input and is folded into one ``Gemm`` with the product
as its ``C``. Each output column is computed exactly as it would be alone, so the logits are
bitwise those of one product per matrix with the correction as ``MatMul`` then ``Add`` (the
layout of converter version 1; ``pack=False`` still builds one product per matrix), in about 11%
less time per decode step at batch 1 and 5% at batch 8 (SmolLM2-135M, 2 threads). The head
reads 3-D rows so that it writes the ``logits`` output itself (no copy of the logits).

Shared buffer (recommended, what the engine does): allocate one ``[B, kv, M, hd]`` float32
buffer per layer for keys and one for values (``M`` = prompt + max new tokens, at most
``config.max_position``), zero-filled or not, and bind it with IO binding as BOTH
``past_key_values.{i}.key`` and ``present.{i}.key`` (same for value). ORT then writes the new
keys in place (``P = M`` and ``present`` has length ``max(T, M) = M`` as long as ``T <= M``).

(a) Prefill of one sequence of ``L`` tokens (B = 1), either
    * ``input_ids`` [1, L], ``attention_mask`` = ones [1, L] (T = S: "first prompt"), or
    * ``attention_mask`` [1, M] with ``L`` ones then zeros (T = M > S). A prompt continued
      in chunks works the same way (B must be 1 whenever 1 < S != T: ORT's rule), but a
      split prefill's logits differ from a one-pass prefill in the last bits.
(a') Batched prefill of fresh rows (B > 1, no past): ``input_ids`` [B, S] right-padded with
    any id, ``attention_mask`` [B, S] with ``L_b`` ones then zeros (T must equal S). Take row
    ``b``'s next-token logits at position ``L_b - 1``; its buffer slots ``>= L_b`` hold junk
    that later steps overwrite.
(b) Batched decode, rows of different lengths: ``input_ids`` [B, 1] (each row's next token),
    ``attention_mask`` [B, W] with ``L_b + 1`` ones then zeros, where ``L_b`` tokens of row b
    are already in the buffer, and any ``W`` with ``max_b(L_b+1) <= W <= M`` (W = M is
    simplest). The new key goes to slot ``L_b``; logits [B, 1, vocab].

Without a shared buffer (plain ``session.run``): pass ``past`` of length ``P`` (P = 0 at the
start: shape [B, kv, 0, hd]) and a mask of width ``T = P + S``; ``present`` has length T and
becomes the next call's ``past``. Rows must then all have the same length (no padding).

Integers the graph relies on: ``T <= max_position`` (rotary cache rows); head_dim a multiple
of 16; num_heads a multiple of kv_heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from workbench._engine._model import ModelConfig

__all__ = [
    "ACCURACY_EXACT",
    "ACCURACY_INT8",
    "LayerWeights",
    "Linear",
    "LlamaWeights",
    "build_llama_graph",
    "rope_tables",
]

BLOCK = 32
ACCURACY_INT8 = 4  # MatMulNBits quantises activations to int8 per block: fast
ACCURACY_EXACT = 0  # fp32 activations: the dequantised weights are used exactly
OPSET = 17

LinearKind = Literal["q4_0", "q4_1", "q8_0", "float"]


@dataclass(frozen=True)
class Linear:
    """A weight matrix ``W`` [n_out, n_in] for ``y = x @ W.T``, stored without loss.

    * ``q4_1``: ``data`` uint8 [n_out, n_in/32, 16] (MatMulNBits 4-bit layout, element ``2j`` in
      the low nibble of byte ``j``), ``scales`` float32 [n_out, n_in/32], ``mins`` float16
      [n_out, n_in/32]: ``W = scales * q + mins`` blockwise.
    * ``q4_0``: as ``q4_1`` without mins: ``W = scales * (q - 8)``.
    * ``q8_0``: ``data`` uint8 [n_out, n_in/32, 32] holding ``q + 128``, ``scales`` float32:
      ``W = scales * (data - 128)``.
    * ``float``: ``data`` float32 [n_out, n_in].
    """

    kind: LinearKind
    n_out: int
    n_in: int
    data: np.ndarray
    scales: np.ndarray | None = None
    mins: np.ndarray | None = None

    def dequantize(self) -> np.ndarray:
        """The float32 [n_out, n_in] matrix this encodes (for the reference implementation)."""
        if self.kind == "float":
            return np.asarray(self.data, dtype=np.float32)
        assert self.scales is not None
        if self.kind == "q8_0":
            q = self.data.astype(np.float32) - 128.0
        else:
            q = np.stack([self.data & 0x0F, self.data >> 4], axis=-1).reshape(
                self.n_out, -1, BLOCK).astype(np.float32)
            q = q - 8.0 if self.kind == "q4_0" else q
        w = q * self.scales[:, :, None]
        if self.mins is not None:
            w = w + self.mins.astype(np.float32)[:, :, None]
        return np.asarray(w.reshape(self.n_out, self.n_in), dtype=np.float32)


@dataclass(frozen=True)
class LayerWeights:
    """One decoder block. Biases (Qwen2-style q/k/v bias) are optional float32 vectors."""

    attn_norm: np.ndarray
    q: Linear
    k: Linear
    v: Linear
    o: Linear
    ffn_norm: np.ndarray
    gate: Linear
    up: Linear
    down: Linear
    q_bias: np.ndarray | None = None
    k_bias: np.ndarray | None = None
    v_bias: np.ndarray | None = None


@dataclass(frozen=True)
class LlamaWeights:
    """All weights. ``lm_head`` None means tied to ``embedding`` (SmolLM2, most small Llamas)."""

    embedding: Linear
    layers: Sequence[LayerWeights]
    final_norm: np.ndarray
    lm_head: Linear | None


def rope_tables(config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin caches [max_position, head_dim/2] float32 (computed in float64, then rounded)."""
    half = config.head_dim // 2
    inv_freq = config.rope_theta ** (-np.arange(half, dtype=np.float64) * 2.0 / config.head_dim)
    angles = np.arange(config.max_position, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


class _Builder:
    """Collects nodes and initializers; every helper returns its output's name."""

    def __init__(self, accuracy_level: int, pack: bool = True) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.accuracy_level = accuracy_level
        self.pack = pack
        self._count = 0
        self._block_sums: dict[str, str] = {}
        self._row_shapes: dict[int, str] = {}

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str, *, outputs: int = 1,
           domain: str = "", **attrs: Any) -> str:
        names = [self.name(hint) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=self.name(op_type),
                                           domain=domain, **attrs))
        return names[0]

    def rms_norm(self, x: str, gamma: np.ndarray, eps: float, prefix: str) -> str:
        g = self.init(f"{prefix}.weight", gamma.astype(np.float32))
        return self.op("SimplifiedLayerNormalization", [x, g], f"{prefix}_out", axis=-1,
                       epsilon=eps, stash_type=1)

    def linear(self, x: str, w: Linear, prefix: str, bias: np.ndarray | None = None) -> str:
        if w.kind == "float":
            wt = self.init(f"{prefix}.weight_t", np.ascontiguousarray(w.data.T, np.float32))
            y = self.op("MatMul", [x, wt], f"{prefix}_out")
        else:
            y = self._matmul_nbits(x, w, prefix)
        if w.mins is not None:
            y = self._min_correction(x, y, w, prefix)
        if bias is not None:
            y = self.op("Add", [y, self.init(f"{prefix}.bias", bias.astype(np.float32))],
                        f"{prefix}_biased")
        return y

    def linears(self, x: str, ws: Sequence[Linear], prefix: str,
                biases: Sequence[np.ndarray | None] | None = None) -> str | list[str]:
        """``x @ W_i.T (+ bias_i)`` for matrices that read the same input, as ONE packed
        product when they share an encoding (their outputs side by side in one tensor: a
        ``str``), else one product each (a ``list``). Packing changes no bit of any output:
        every output column is computed as it would be alone."""
        biases = list(biases) if biases is not None else [None] * len(ws)
        packed = _pack(ws) if self.pack else None
        if packed is None:
            return [self.linear(x, w, f"{prefix}.{i}", b)
                    for i, (w, b) in enumerate(zip(ws, biases, strict=True))]
        bias = None
        if any(b is not None for b in biases):  # adding 0.0 leaves a value unchanged
            bias = np.concatenate([np.zeros(w.n_out, np.float32) if b is None else
                                   b.astype(np.float32) for w, b in zip(ws, biases, strict=True)])
        return self.linear(x, packed, prefix, bias)

    def split(self, x: str, sizes: Sequence[int], hint: str) -> list[str]:
        """Cut the last axis of ``x`` into parts of ``sizes``."""
        names = [self.name(hint) for _ in sizes]
        lengths = self.init(self.name("split_sizes"), np.array(sizes, np.int64))
        self.nodes.append(helper.make_node("Split", [x, lengths], names, name=self.name("Split"),
                                           axis=-1))
        return names

    def _matmul_nbits(self, x: str, w: Linear, prefix: str) -> str:
        assert w.scales is not None
        blocks = w.n_in // BLOCK
        if w.kind in ("q4_0", "q4_1"):  # 4-bit zero points, two per byte: 0 or 8
            fill = 0x88 if w.kind == "q4_0" else 0
            bits, zp = 4, np.full(w.n_out * ((blocks + 1) // 2), fill, np.uint8)
        else:
            bits, zp = 8, np.full((w.n_out, blocks), 128, np.uint8)
        b = self.init(f"{prefix}.qweight", w.data)
        s = self.init(f"{prefix}.scales", w.scales.astype(np.float32))
        z = self.init(f"{prefix}.zero_points", zp)
        return self.op("MatMulNBits", [x, b, s, z], f"{prefix}_out", domain="com.microsoft",
                       K=w.n_in, N=w.n_out, bits=bits, block_size=BLOCK,
                       accuracy_level=self.accuracy_level)

    def _min_correction(self, x: str, y: str, w: Linear, prefix: str) -> str:
        """``y + Σ_b mins[n, b] * (sum of x over block b)``: the Q4_1 per-block offset, exactly,
        as one Gemm (bitwise the same as MatMul then Add: its K, the block count, is small).
        The block sums of ``x`` are computed once and shared by every matrix that reads it."""
        assert w.mins is not None
        sums = self._block_sums.get(x)
        if sums is None:
            shape = self.init(self.name("block_shape"),
                              np.array([0, w.n_in // BLOCK, BLOCK], np.int64))
            blocked = self.op("Reshape", [x, shape], "blocked")
            axes = self.init(self.name("axes_last"), np.array([-1], np.int64))
            sums = self.op("ReduceSum", [blocked, axes], "block_sums", keepdims=0)
            self._block_sums[x] = sums
        mins16 = self.init(f"{prefix}.mins_t", np.ascontiguousarray(w.mins.T, np.float16))
        mins = self.op("Cast", [mins16], f"{prefix}_mins_f32", to=TensorProto.FLOAT)
        return self.op("Gemm", [sums, mins, y], f"{prefix}_q41")

    def rows_shape(self, width: int) -> str:
        """The shape [B, S, width] (B and S from ``input_ids``), computed once per width."""
        shape = self._row_shapes.get(width)
        if shape is None:
            shape = self.op("Concat", [self.op("Shape", ["input_ids"], "ids_shape"),
                                       self.init(self.name("width"), np.array([width], np.int64))],
                            f"rows_shape_{width}", axis=0)
            self._row_shapes[width] = shape
        return shape

    def rows(self, x: str, width: int, hint: str) -> str:
        """``x`` [B*S, width] as [B, S, width]."""
        return self.op("Reshape", [x, self.rows_shape(width)], hint)

    def flat(self, x: str, width: int, hint: str) -> str:
        """``x`` [B, S, width] as [B*S, width]."""
        shape = self.init(self.name("flat_shape"), np.array([-1, width], np.int64))
        return self.op("Reshape", [x, shape], hint)

    def embedding(self, ids: str, w: Linear) -> str:
        """Gather rows; a Q8_0 table shares its bytes with the tied 8-bit LM head."""
        if w.kind != "q8_0":
            rows = self.op("Gather", [self.init("embed.table", w.dequantize()), ids], "embed3")
            return self.flat(rows, w.n_in, "embed")
        assert w.scales is not None
        table = self.init("token_embd.qweight", w.data)
        scales = self.init("token_embd.scales", w.scales.astype(np.float32))
        rows = self.op("Cast", [self.op("Gather", [table, ids], "emb_q")], "emb_f",
                       to=TensorProto.FLOAT)
        centred = self.op("Sub", [rows, self.init("emb_128", np.array(128.0, np.float32))],
                          "emb_c")
        row_scales = self.op("Unsqueeze", [self.op("Gather", [scales, ids], "emb_s"),
                                           self.init("axes_m1", np.array([-1], np.int64))],
                             "emb_s1")
        scaled = self.op("Mul", [centred, row_scales], "emb_scaled")
        shape = self.init("emb_shape", np.array([-1, w.n_in], np.int64))
        return self.op("Reshape", [scaled, shape], "embed")


def _value_info(name: str, elem: int, dims: Sequence[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, list(dims))


def build_llama_graph(config: ModelConfig, weights: LlamaWeights, *,
                      accuracy_level: int = ACCURACY_INT8, pack: bool = True
                      ) -> onnx.ModelProto:
    """The decoder graph (see the module docstring for its inputs and outputs).

    ``accuracy_level`` is MatMulNBits' ``accuracy_level``: :data:`ACCURACY_INT8` (fast,
    activations quantised to int8 per block) or :data:`ACCURACY_EXACT` (fp32 activations).
    ``pack=False`` gives one product per matrix (the same logits, bit for bit; for tests).
    """
    g = _Builder(accuracy_level, pack)
    kv, hd = config.num_kv_heads, config.head_dim
    cos, sin = rope_tables(config)
    g.init("cos_cache", cos)
    g.init("sin_cache", sin)
    seqlens = g.op("Cast", [g.op("Sub", [
        g.op("ReduceSum", ["attention_mask", g.init("axes_1", np.array([1], np.int64))],
             "mask_len", keepdims=0),
        g.init("one_i64", np.array(1, np.int64))], "seqlens64")], "seqlens_k",
        to=TensorProto.INT32)
    total = g.op("Cast", [g.op("Gather", [g.op("Shape", ["attention_mask"], "mask_shape"),
                                          g.init("idx_1", np.array(1, np.int64))],
                               "total64", axis=0)], "total_seq_len", to=TensorProto.INT32)
    hidden = g.embedding("input_ids", weights.embedding)
    for i, layer in enumerate(weights.layers):
        p = f"blk.{i}"
        x = g.rms_norm(hidden, layer.attn_norm, config.rms_eps, f"{p}.attn_norm")
        attn = _attention(g, config, layer, x, i, (seqlens, total))
        hidden = g.op("Add", [hidden, g.linear(attn, layer.o, f"{p}.attn_output")], f"{p}.res1")
        x = g.rms_norm(hidden, layer.ffn_norm, config.rms_eps, f"{p}.ffn_norm")
        gate_up = g.linears(x, [layer.gate, layer.up], f"{p}.ffn_gate_up")
        gate, up = (g.split(gate_up, [layer.gate.n_out, layer.up.n_out], f"{p}.ffn")
                    if isinstance(gate_up, str) else gate_up)
        act = g.op("Mul", [gate, g.op("Sigmoid", [gate], f"{p}.sig")], f"{p}.silu")
        glu = g.op("Mul", [act, up], f"{p}.glu")
        hidden = g.op("Add", [hidden, g.linear(glu, layer.down, f"{p}.ffn_down")], f"{p}.res2")
    x = g.rms_norm(hidden, weights.final_norm, config.rms_eps, "output_norm")
    logits = _head(g, config, x, weights)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits_out"))

    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [_value_info("input_ids", i64, ["batch_size", "sequence_length"]),
              _value_info("attention_mask", i64, ["batch_size", "total_sequence_length"])]
    outs = [_value_info("logits", f, ["batch_size", "sequence_length", config.vocab_size])]
    for i in range(config.num_layers):
        for part in ("key", "value"):
            inputs.append(_value_info(f"past_key_values.{i}.{part}", f,
                                      ["batch_size", kv, "past_sequence_length", hd]))
            outs.append(_value_info(f"present.{i}.{part}", f,
                                    ["batch_size", kv, "present_sequence_length", hd]))
    graph = helper.make_graph(g.nodes, "workbench-llama", inputs, outs, initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("com.microsoft", 1)],
                              producer_name="workbench")
    model.ir_version = 9
    return model


def _pack(ws: Sequence[Linear]) -> Linear | None:
    """The matrices stacked along ``n_out`` (one Linear), or None when their encodings or
    input widths differ."""
    first = ws[0]
    if any(w.kind != first.kind or w.n_in != first.n_in for w in ws):
        return None
    has_mins = first.mins is not None
    if any((w.mins is not None) != has_mins or (w.scales is None) != (first.scales is None)
           for w in ws):
        return None

    def stacked(parts: list[np.ndarray | None]) -> np.ndarray | None:
        arrays = [a for a in parts if a is not None]
        return np.concatenate(arrays, axis=0) if len(arrays) == len(parts) else None

    return Linear(first.kind, sum(w.n_out for w in ws), first.n_in,
                  np.concatenate([w.data for w in ws], axis=0),
                  stacked([w.scales for w in ws]), stacked([w.mins for w in ws]))


def _attention(g: _Builder, config: ModelConfig, layer: LayerWeights, x: str, i: int,
               lengths: tuple[str, str]) -> str:
    """Layer ``i``'s GroupQueryAttention on ``x`` [B*S, hidden]; returns [B*S, heads*head_dim].
    q/k/v go in as one packed tensor when they share an encoding (GQA unpacks it)."""
    p = f"blk.{i}"
    mats = (layer.q, layer.k, layer.v)
    qkv = g.linears(x, mats, f"{p}.attn_qkv", [layer.q_bias, layer.k_bias, layer.v_bias])
    if isinstance(qkv, str):
        q, k, v = g.rows(qkv, sum(w.n_out for w in mats), f"{p}.qkv3"), "", ""
    else:
        q, k, v = (g.rows(t, w.n_out, f"{p}.qkv3") for t, w in zip(qkv, mats, strict=True))
    attn = g.name(f"{p}.attn")
    g.nodes.append(helper.make_node(
        "GroupQueryAttention",
        [q, k, v, f"past_key_values.{i}.key", f"past_key_values.{i}.value", *lengths,
         "cos_cache", "sin_cache"],
        [attn, f"present.{i}.key", f"present.{i}.value"], name=g.name("GroupQueryAttention"),
        domain="com.microsoft", num_heads=config.num_heads, kv_num_heads=config.num_kv_heads,
        do_rotary=1, rotary_interleaved=1))
    return g.flat(attn, layer.o.n_in, f"{p}.attn_flat")


def _head(g: _Builder, config: ModelConfig, x: str, weights: LlamaWeights) -> str:
    """Logits [B, S, vocab] from ``x`` [B*S, hidden]. The head reads ``x`` as [B, S, hidden]
    so that its output is the graph output itself (a reshaped output would be copied: 64 MB
    for a 41-token prompt at B = 8); a Q4_1 head's correction needs 2-D rows, so it is
    reshaped after."""
    head = weights.lm_head
    if head is None and weights.embedding.kind == "q8_0":
        return _tied_head(g, g.rows(x, config.hidden_size, "output_norm3"), weights)
    head = head if head is not None else weights.embedding
    if head.mins is not None:
        return g.rows(g.linear(x, head, "output"), config.vocab_size, "logits3")
    return g.linear(g.rows(x, config.hidden_size, "output_norm3"), head, "output")


def _tied_head(g: _Builder, x: str, weights: LlamaWeights) -> str:
    """LM head tied to a Q8_0 embedding: 8-bit MatMulNBits over the embedding's own bytes."""
    w = weights.embedding
    assert w.scales is not None
    zp = g.init("output.zero_points", np.full((w.n_out, w.n_in // BLOCK), 128, np.uint8))
    return g.op("MatMulNBits", [x, "token_embd.qweight", "token_embd.scales", zp], "output_out",
                domain="com.microsoft", K=w.n_in, N=w.n_out, bits=8, block_size=BLOCK,
                accuracy_level=g.accuracy_level)

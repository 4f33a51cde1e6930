"""A plain numpy fp32 forward pass of the same Llama architecture, for verification.

It shares nothing with the ONNX graph except the weights (dequantised with
:meth:`Linear.dequantize`) and the rotary tables, so agreement between the two is evidence
that the converter is right. Slow by design (one sequence, no KV cache): tests only.
"""

from __future__ import annotations

import numpy as np

from workbench._engine._graph import LlamaWeights, rope_tables
from workbench._engine._model import ModelConfig

__all__ = ["reference_logits"]


def reference_logits(config: ModelConfig, weights: LlamaWeights, ids: list[int]) -> np.ndarray:
    """Logits float32 [len(ids), vocab] for one sequence, teacher-forced, causal."""
    if not ids or len(ids) > config.max_position:
        raise ValueError(f"need 1..{config.max_position} token ids, got {len(ids)}")
    cos, sin = rope_tables(config)
    table = weights.embedding.dequantize()
    x = table[np.asarray(ids)]
    for layer in weights.layers:
        h = _rms(x, layer.attn_norm, config.rms_eps)
        q = _proj(h, layer.q.dequantize(), layer.q_bias)
        k = _proj(h, layer.k.dequantize(), layer.k_bias)
        v = _proj(h, layer.v.dequantize(), layer.v_bias)
        x = x + _attention(config, q, k, v, cos, sin) @ layer.o.dequantize().T
        h = _rms(x, layer.ffn_norm, config.rms_eps)
        gate = h @ layer.gate.dequantize().T
        x = x + ((gate / (1.0 + np.exp(-gate))) * (h @ layer.up.dequantize().T)) \
            @ layer.down.dequantize().T
    x = _rms(x, weights.final_norm, config.rms_eps)
    head = weights.lm_head if weights.lm_head is not None else weights.embedding
    return np.asarray(x @ head.dequantize().T, dtype=np.float32)


def _rms(x: np.ndarray, gamma: np.ndarray, eps: float) -> np.ndarray:
    return np.asarray(x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * gamma,
                      dtype=np.float32)


def _proj(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    y = np.asarray(x @ w.T, dtype=np.float32)
    return y + bias if bias is not None else y


def _rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Interleaved rotary: pairs (x[2i], x[2i+1]) turned by position * theta_i. x: [S, H, D]."""
    c, s = cos[: x.shape[0], None, :], sin[: x.shape[0], None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * c - odd * s
    out[..., 1::2] = even * s + odd * c
    return out


def _attention(config: ModelConfig, q: np.ndarray, k: np.ndarray, v: np.ndarray,
               cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    n, d, group = q.shape[0], config.head_dim, config.num_heads // config.num_kv_heads
    qh = _rotate(q.reshape(n, config.num_heads, d), cos, sin)
    kh = np.repeat(_rotate(k.reshape(n, config.num_kv_heads, d), cos, sin), group, axis=1)
    vh = np.repeat(v.reshape(n, config.num_kv_heads, d), group, axis=1)
    scores = np.einsum("qhd,khd->hqk", qh, kh) / np.sqrt(d)
    scores = np.where(np.tril(np.ones((n, n), bool))[None], scores, -np.inf)
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    probs = scores / scores.sum(-1, keepdims=True)
    out = np.einsum("hqk,khd->qhd", probs, vh).reshape(n, config.num_heads * d)
    return np.asarray(out, dtype=np.float32)

"""Read a Llama-family GGUF file: configuration, tokenizer metadata and weights.

Supported tensor types: Q4_0, Q4_1, Q8_0 (kept quantised, losslessly) and F16/F32.
Anything else raises :class:`~workbench.errors.ModelLoadError` naming the tensor and its
type. So does a file that is not GGUF, is truncated, or lacks a key or tensor the
architecture needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench._engine._graph import BLOCK, LayerWeights, Linear, LlamaWeights
from workbench._engine._model import ModelConfig
from workbench.errors import ModelLoadError

__all__ = ["GGUFModel", "read_gguf"]

ARCHITECTURES = ("llama", "mistral", "qwen2", "granite", "smollm")
SUPPORTED_TYPES = ("Q4_0", "Q4_1", "Q8_0", "F16", "F32")
BLOCK_BYTES = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34}
MAX_CONTEXT = 131072  # rotary cache rows beyond this are refused (memory bound)


@dataclass(frozen=True)
class GGUFModel:
    """Everything the converter needs from one GGUF file."""

    config: ModelConfig
    weights: LlamaWeights
    metadata: dict[str, Any]  # scalar and string-list metadata (tokenizer.*, general.*)


def read_gguf(path: Path, *, max_position: int | None = None,
              on_layer: Callable[[int, int], None] | None = None) -> GGUFModel:
    """Parse ``path``. Raises ModelLoadError for malformed, truncated or unsupported files.

    ``on_layer(done, total)`` is called after each decoder block's weights are re-encoded.
    """
    try:
        import gguf

        reader = gguf.GGUFReader(str(path))
    except ModelLoadError:
        raise
    except Exception as exc:  # the reader raises anything from ValueError to struct.error
        raise ModelLoadError(str(path), f"not a readable GGUF file ({exc})") from exc
    try:
        metadata = _metadata(reader)
        config = _config(metadata, max_position)
        tensors = {t.name: t for t in reader.tensors}
        weights = _weights(tensors, config, on_layer)
    except ModelLoadError as exc:
        raise ModelLoadError(str(path), exc.reason) from exc
    except Exception as exc:
        raise ModelLoadError(str(path), f"malformed GGUF content ({type(exc).__name__}: "
                                        f"{exc})") from exc
    return GGUFModel(config, weights, metadata)


def _metadata(reader: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        out[key] = field.contents()
    return out


def _need(meta: dict[str, Any], key: str) -> Any:
    if key not in meta:
        raise ModelLoadError("", f"metadata key {key!r} is missing")
    return meta[key]


def _int(meta: dict[str, Any], key: str, lo: int = 1, hi: int = 1 << 20) -> int:
    value = _need(meta, key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ModelLoadError("", f"metadata {key}={value!r} is not an integer in [{lo}, {hi}]")
    return value


def _config(meta: dict[str, Any], max_position: int | None) -> ModelConfig:
    arch = _need(meta, "general.architecture")
    if arch not in ARCHITECTURES:
        raise ModelLoadError("", f"architecture {arch!r} is not supported (only Llama-family: "
                                 f"{', '.join(ARCHITECTURES)})")
    hidden = _int(meta, f"{arch}.embedding_length")
    heads = _int(meta, f"{arch}.attention.head_count", hi=4096)
    kv_heads = meta.get(f"{arch}.attention.head_count_kv", heads)
    if not isinstance(kv_heads, int) or kv_heads < 1 or heads % kv_heads:
        raise ModelLoadError("", f"head_count_kv={kv_heads!r} does not divide head_count={heads}")
    head_dim = hidden // heads
    if head_dim * heads != hidden or head_dim % 16:
        raise ModelLoadError("", f"head dimension {hidden}/{heads} is not a multiple of 16, "
                                 "which GroupQueryAttention needs")
    _check_rope(meta, arch, head_dim)
    context = _int(meta, f"{arch}.context_length", hi=1 << 24)
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = meta.get(f"{arch}.vocab_size", len(tokens) if isinstance(tokens, list) else None)
    if not isinstance(vocab, int) or vocab < 1:
        raise ModelLoadError("", "vocabulary size unknown (no tokenizer.ggml.tokens)")
    eos = tuple(dict.fromkeys(v for k in ("tokenizer.ggml.eos_token_id",
                                          "tokenizer.ggml.eot_token_id")
                              if isinstance(v := meta.get(k), int)))
    bos = meta.get("tokenizer.ggml.bos_token_id")
    return ModelConfig(
        architecture=arch, num_layers=_int(meta, f"{arch}.block_count", hi=1024),
        hidden_size=hidden, num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
        intermediate_size=_int(meta, f"{arch}.feed_forward_length"), vocab_size=vocab,
        max_position=min(context, max_position or MAX_CONTEXT, MAX_CONTEXT),
        rope_theta=float(meta.get(f"{arch}.rope.freq_base", 10000.0)),
        rms_eps=float(meta.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        bos_token_id=bos if isinstance(bos, int) else None, eos_token_ids=eos,
        context_length=context)


def _check_rope(meta: dict[str, Any], arch: str, head_dim: int) -> None:
    """Only plain rotary embeddings over the whole head are converted (no scaling)."""
    scaling = meta.get(f"{arch}.rope.scaling.type", "none")
    factor = meta.get(f"{arch}.rope.scaling.factor", 1.0)
    if scaling != "none" and factor != 1.0:
        raise ModelLoadError("", f"rope scaling {scaling!r} (factor {factor}) is not supported")
    dims = meta.get(f"{arch}.rope.dimension_count", head_dim)
    if dims != head_dim:
        raise ModelLoadError("", f"partial rotary embeddings ({dims} of {head_dim} dimensions) "
                                 "are not supported")


def _weights(tensors: dict[str, Any], config: ModelConfig,
             on_layer: Callable[[int, int], None] | None) -> LlamaWeights:
    h, kvd, ff = config.hidden_size, config.num_kv_heads * config.head_dim, \
        config.intermediate_size

    def lin(name: str, n_out: int, n_in: int) -> Linear:
        return _linear(_tensor(tensors, name), name, n_out, n_in)

    def vec(name: str, n: int, required: bool = True) -> np.ndarray | None:
        if name not in tensors and not required:
            return None
        return _vector(_tensor(tensors, name), name, n)

    layers = []
    for i in range(config.num_layers):
        p = f"blk.{i}"
        layers.append(LayerWeights(
            attn_norm=_must(vec(f"{p}.attn_norm.weight", h)),
            q=lin(f"{p}.attn_q.weight", h, h), k=lin(f"{p}.attn_k.weight", kvd, h),
            v=lin(f"{p}.attn_v.weight", kvd, h), o=lin(f"{p}.attn_output.weight", h, h),
            ffn_norm=_must(vec(f"{p}.ffn_norm.weight", h)),
            gate=lin(f"{p}.ffn_gate.weight", ff, h), up=lin(f"{p}.ffn_up.weight", ff, h),
            down=lin(f"{p}.ffn_down.weight", h, ff),
            q_bias=vec(f"{p}.attn_q.bias", h, False), k_bias=vec(f"{p}.attn_k.bias", kvd, False),
            v_bias=vec(f"{p}.attn_v.bias", kvd, False)))
        if on_layer is not None:
            on_layer(i + 1, config.num_layers)
    if "rope_freqs.weight" in tensors:
        raise ModelLoadError("", "per-frequency rope factors (rope_freqs.weight, Llama 3.1 "
                                 "style scaling) are not supported")
    head = lin("output.weight", config.vocab_size, h) if "output.weight" in tensors else None
    return LlamaWeights(embedding=lin("token_embd.weight", config.vocab_size, h),
                        layers=layers, final_norm=_must(vec("output_norm.weight", h)),
                        lm_head=head)


def _must(value: np.ndarray | None) -> np.ndarray:
    assert value is not None
    return value


def _tensor(tensors: dict[str, Any], name: str) -> Any:
    if name not in tensors:
        raise ModelLoadError("", f"tensor {name!r} is missing")
    return tensors[name]


def _type_name(tensor: Any) -> str:
    return str(getattr(tensor.tensor_type, "name", tensor.tensor_type))


def _vector(tensor: Any, name: str, n: int) -> np.ndarray:
    kind = _type_name(tensor)
    if kind not in ("F32", "F16"):
        raise ModelLoadError("", f"tensor {name!r} has type {kind}; norms/biases must be F32/F16")
    data = np.asarray(tensor.data).reshape(-1)
    if data.size != n:
        raise ModelLoadError("", f"tensor {name!r} has {data.size} elements, expected {n}")
    return data.astype(np.float32)


def _linear(tensor: Any, name: str, n_out: int, n_in: int) -> Linear:
    """Re-encode one GGUF matrix [n_out, n_in] for MatMulNBits, bit for bit."""
    kind = _type_name(tensor)
    if kind not in SUPPORTED_TYPES:
        raise ModelLoadError("", f"tensor {name!r} has type {kind}, which the converter does "
                                 f"not support (supported: {', '.join(SUPPORTED_TYPES)}); "
                                 "re-quantise the model to Q4_0, Q4_1 or Q8_0")
    dims = [int(d) for d in tensor.shape]
    if dims != [n_in, n_out]:
        raise ModelLoadError("", f"tensor {name!r} has shape {dims}, expected {[n_in, n_out]}")
    data = np.asarray(tensor.data)
    if kind in ("F32", "F16"):
        return Linear("float", n_out, n_in, data.reshape(n_out, n_in).astype(np.float32))
    if n_in % BLOCK:
        raise ModelLoadError("", f"tensor {name!r}: row length {n_in} is not a multiple of 32")
    blocks = n_in // BLOCK
    raw = np.ascontiguousarray(data, dtype=np.uint8).reshape(n_out, blocks, BLOCK_BYTES[kind])
    scales = raw[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    if kind == "Q8_0":
        q = raw[..., 2:].copy().view(np.int8).astype(np.int16) + 128
        return Linear("q8_0", n_out, n_in, q.astype(np.uint8), scales)
    has_min = kind == "Q4_1"
    qs = raw[..., 4:] if has_min else raw[..., 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # element order 0..31
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    if not has_min:
        return Linear("q4_0", n_out, n_in, packed, scales)
    mins = raw[..., 2:4].copy().view(np.float16)[..., 0]
    return Linear("q4_1", n_out, n_in, packed, scales, mins)

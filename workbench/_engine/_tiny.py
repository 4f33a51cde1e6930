"""Tiny Llama-architecture models with random weights, for tests (kilobytes, milliseconds).

:func:`write_tiny_gguf` writes a real GGUF file (Q4_1 matrices, Q8_0 tied embedding, GQA,
byte-level BPE vocabulary, ChatML template), and :func:`make_tiny_model` converts it with the
same converter users run, so tests exercise the real import path and the real graph.
Everything is a pure function of the arguments (same seed, same bytes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workbench._engine._convert import convert_gguf
from workbench._engine._model import ModelFiles
from workbench.errors import ConfigError

__all__ = ["TINY_CHAT_TEMPLATE", "make_tiny_model", "tiny_vocabulary", "write_tiny_gguf"]

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # ids 0, 1, 2 as in SmolLM2
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
_WORDS = ("the", "and", "ing", "hello", "world", "agent", "model", "step", "token", "you",
          "is", "to", "of", "in", "it", "that", "what", "ok", "yes", "no")


def _byte_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values, in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def tiny_vocabulary(size: int | None = None) -> tuple[list[str], list[int], list[str]]:
    """(tokens, llama.cpp token types, merges) of the tiny byte-level BPE vocabulary."""
    tokens, merges = [*SPECIALS, *_byte_alphabet()], []
    known = set(tokens)
    for word in _WORDS:  # left-to-right merges build the word, then one merge adds "Ġ"
        steps = [(word[: end - 1], word[end - 1]) for end in range(2, len(word) + 1)]
        for left, right in [*steps, ("Ġ", word)]:
            if left + right not in known:
                merges.append(f"{left} {right}")
                tokens.append(left + right)
                known.add(left + right)
    if size is not None:
        if size < len(tokens):
            raise ConfigError(f"tiny vocabulary needs at least {len(tokens)} tokens, got {size}")
        tokens += [f"<|extra_{i}|>" for i in range(size - len(tokens))]
    types = [3 if t in SPECIALS or t.startswith("<|extra_") else 1 for t in tokens]
    return tokens, types, merges


def write_tiny_gguf(path: Path, *, layers: int = 2, hidden: int = 64, heads: int = 4,
                    kv_heads: int = 2, intermediate: int | None = None,
                    vocab: int | None = None, context: int = 512, seed: int = 0,
                    matrix_type: str = "Q4_1") -> Path:
    """Write a tiny random Llama GGUF to ``path`` and return it. Raises ConfigError on bad sizes.

    ``matrix_type`` is the GGML type of the layer matrices (Q4_1 like the default model;
    Q8_0, F16, F32 or an unsupported type to test the converter's error).
    """
    import gguf

    if hidden % 32 or hidden % heads or (hidden // heads) % 16 or heads % kv_heads:
        raise ConfigError("tiny model needs hidden % 32 == 0, head_dim % 16 == 0 and "
                          f"heads % kv_heads == 0 (got {hidden=}, {heads=}, {kv_heads=})")
    ff = intermediate or 2 * hidden
    tokens, types, merges = tiny_vocabulary(vocab)
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    _write_metadata(writer, layers, hidden, heads, kv_heads, ff, context)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(TINY_CHAT_TEMPLATE)
    kvd = kv_heads * (hidden // heads)

    def matrix(name: str, n_out: int, n_in: int, qtype: Any = None) -> None:
        qtype = qtype or gguf.GGMLQuantizationType[matrix_type]
        w = rng.normal(0.0, 1.0 / np.sqrt(n_in), (n_out, n_in)).astype(np.float32)
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, w)
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, w.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(w, qtype), raw_dtype=qtype)

    def norm(name: str) -> None:
        writer.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(hidden)).astype(np.float32))

    matrix("token_embd.weight", len(tokens), hidden, gguf.GGMLQuantizationType.Q8_0)
    for i in range(layers):
        p = f"blk.{i}"
        norm(f"{p}.attn_norm.weight")
        matrix(f"{p}.attn_q.weight", hidden, hidden)
        matrix(f"{p}.attn_k.weight", kvd, hidden)
        matrix(f"{p}.attn_v.weight", kvd, hidden)
        matrix(f"{p}.attn_output.weight", hidden, hidden)
        norm(f"{p}.ffn_norm.weight")
        matrix(f"{p}.ffn_gate.weight", ff, hidden)
        matrix(f"{p}.ffn_up.weight", ff, hidden)
        matrix(f"{p}.ffn_down.weight", hidden, ff)
    norm("output_norm.weight")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _write_metadata(writer: Any, layers: int, hidden: int, heads: int, kv_heads: int,
                    ff: int, context: int) -> None:
    writer.add_block_count(layers)
    writer.add_context_length(context)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)


def make_tiny_model(folder: Path, *, layers: int = 2, hidden: int = 64, heads: int = 4,
                    kv_heads: int = 2, vocab: int | None = None, seed: int = 0,
                    exact: bool = False, context: int = 512) -> ModelFiles:
    """Write ``folder/tiny.gguf`` and convert it into ``folder``; return the ModelFiles.

    ``exact=True`` gives the fp32-activation variant (``q4-fp32act``), else the fast one.
    The model id is ``tiny-<layers>x<hidden>-s<seed>``; the hash depends on every argument.
    """
    folder.mkdir(parents=True, exist_ok=True)
    source = write_tiny_gguf(folder / "tiny.gguf", layers=layers, hidden=hidden, heads=heads,
                             kv_heads=kv_heads, vocab=vocab, context=context, seed=seed)
    return convert_gguf(source, folder, variant="q4-fp32act" if exact else "q4-int8act",
                        model_id=f"tiny-{layers}x{hidden}-s{seed}")

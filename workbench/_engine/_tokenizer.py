"""Build a ``tokenizer.json`` (Hugging Face ``tokenizers``) from GGUF tokenizer metadata.

Supports byte-level BPE vocabularies (``tokenizer.ggml.model == "gpt2"``) with the
pre-tokenizer families llama.cpp names in ``tokenizer.ggml.pre``: gpt2/default,
smollm/starcoder/refact (digits split one by one), llama-bpe/llama3 and qwen2. Other tokenizer
models (SentencePiece ``llama``, ``t5`` ...) raise :class:`~workbench.errors.ModelLoadError`.

:class:`PromptEncoder` turns prompts into ids so that text never becomes a control token:
only the chat template's own control tokens (see ``_chat.py``) or an explicit opt-in for a raw
prompt produce them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenizers import (
    AddedToken,
    Encoding,
    Regex,
    Tokenizer,
    decoders,
    models,
    pre_tokenizers,
    processors,
)

from workbench.errors import ModelLoadError

__all__ = ["PromptEncoder", "tokenizer_from_metadata"]

_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# pre name -> (split digits one by one first?, main regex)
_PRE: dict[str, tuple[bool, str]] = {
    "default": (False, _GPT2), "gpt2": (False, _GPT2), "gpt-2": (False, _GPT2),
    "smollm": (True, _GPT2), "starcoder": (True, _GPT2), "refact": (True, _GPT2),
    "llama-bpe": (False, _LLAMA3), "llama3": (False, _LLAMA3), "qwen2": (False, _QWEN2),
}
CONTROL, USER_DEFINED = 3, 4  # llama.cpp token types that are matched as whole strings


def tokenizer_from_metadata(meta: dict[str, Any], source: str = "GGUF") -> Tokenizer:
    """A tokenizer equivalent to llama.cpp's for this vocabulary. Raises ModelLoadError."""
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise ModelLoadError(source, f"tokenizer model {model!r} is not supported (only "
                                     "byte-level BPE, tokenizer.ggml.model = 'gpt2')")
    pre = meta.get("tokenizer.ggml.pre", "default")
    if pre not in _PRE:
        raise ModelLoadError(source, f"pre-tokenizer {pre!r} is not supported "
                                     f"(supported: {', '.join(sorted(_PRE))})")
    tokens, merges = meta.get("tokenizer.ggml.tokens"), meta.get("tokenizer.ggml.merges", [])
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise ModelLoadError(source, "tokenizer.ggml.tokens is missing or not a string list")
    if not isinstance(merges, list) or not all(isinstance(m, str) and " " in m for m in merges):
        raise ModelLoadError(source, "tokenizer.ggml.merges is not a list of 'a b' strings")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    pairs = [(a, b) for a, b in (m.split(" ", 1) for m in merges)]
    try:
        tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False,
                                   byte_fallback=False))
    except Exception as exc:  # tokenizers raises plain Exception for bad merges
        raise ModelLoadError(source, f"invalid BPE vocabulary ({exc})") from exc
    tok.pre_tokenizer = _pre_tokenizer(pre)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(_special_tokens(meta, tokens))
    _add_bos(tok, meta, tokens)
    return tok


def _pre_tokenizer(pre: str) -> pre_tokenizers.PreTokenizer:
    digits, pattern = _PRE[pre]
    steps: list[pre_tokenizers.PreTokenizer] = []
    if digits:
        steps.append(pre_tokenizers.Digits(individual_digits=True))
    steps.append(pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False))
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    return pre_tokenizers.Sequence(steps)


def _special_tokens(meta: dict[str, Any], tokens: list[str]) -> list[AddedToken]:
    types = meta.get("tokenizer.ggml.token_type")
    if not isinstance(types, list) or len(types) != len(tokens):
        return []
    return [AddedToken(t, special=kind == CONTROL, normalized=False)
            for t, kind in zip(tokens, types, strict=True) if kind in (CONTROL, USER_DEFINED)]


def _add_bos(tok: Tokenizer, meta: dict[str, Any], tokens: list[str]) -> None:
    bos = meta.get("tokenizer.ggml.bos_token_id")
    if meta.get("tokenizer.ggml.add_bos_token") is True and isinstance(bos, int) \
            and 0 <= bos < len(tokens):
        name = tokens[bos]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{name} $A", pair=f"{name} $A {name} $B", special_tokens=[(name, bos)])


class PromptEncoder:
    """Encodes prompts with special-token matching off, except where a control token is meant.

    ``special`` holds the tokenizer's special-token strings (``<|im_start|>``, ...). Plain
    text, including a special-token string inside it, is encoded as ordinary text pieces;
    non-special added tokens still match, as they would in any text. Not thread-safe (the
    engine calls it under its lock).
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._text = Tokenizer.from_str(tokenizer.to_str())
        self._text.encode_special_tokens = True  # special strings are text here
        self.special = frozenset(t.content for t in tokenizer.get_added_tokens_decoder().values()
                                 if t.special)

    def encode(self, text: str, *, allow_special: bool = False,
               add_special_tokens: bool = True) -> list[int]:
        """Ids of a raw prompt; ``allow_special`` lets special-token strings in it become
        control tokens. ``add_special_tokens``: the tokenizer's BOS/EOS post-processing."""
        tok = self.tokenizer if allow_special else self._text
        ids: list[int] = tok.encode(text, add_special_tokens=add_special_tokens).ids
        return ids

    def encode_segments(self, segments: Sequence[tuple[bool, str]], *,
                        add_special_tokens: bool = True) -> list[int]:
        """Ids of (is control token, text) segments: each control segment is exactly one
        special token, each text segment is encoded as text."""
        parts: list[Encoding] = []
        for control, text in segments:
            if control:
                if text not in self.special:
                    raise ValueError(f"{text!r} is not a special token of this tokenizer")
                part = self.tokenizer.encode(text, add_special_tokens=False)
            else:
                part = self._text.encode(text, add_special_tokens=False)
            parts.append(part)
        if not parts:
            return self.encode("", add_special_tokens=add_special_tokens)
        merged = Encoding.merge(parts, growing_offsets=True)
        ids: list[int] = self.tokenizer.post_process(merged, None, add_special_tokens).ids
        return ids

"""Tokenizer from GGUF metadata and chat-template rendering."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import real_model, tiny_model
from tokenizers import Tokenizer

from workbench._engine._chat import render_chat
from workbench._engine._gguf import read_gguf
from workbench._engine._model import ModelFiles
from workbench._engine._tiny import TINY_CHAT_TEMPLATE, tiny_vocabulary, write_tiny_gguf
from workbench._engine._tokenizer import tokenizer_from_metadata
from workbench.errors import ConfigError, ModelLoadError

__all__ = ["real_model", "tiny_model"]


def _tiny_meta(tmp_path: Path) -> dict[str, object]:
    return read_gguf(write_tiny_gguf(tmp_path / "t.gguf")).metadata


def test_tiny_tokenizer_round_trips_and_keeps_specials_whole(tiny_model: ModelFiles) -> None:
    tok = Tokenizer.from_file(str(tiny_model.tokenizer_path))
    text = "<|im_start|>user\nhello world 123 ünïcode 🙂<|im_end|>\n"
    enc = tok.encode(text)
    assert enc.ids[0] == 1 and 2 in enc.ids
    assert tok.decode(enc.ids, skip_special_tokens=False) == text
    assert tok.encode(" hello").tokens == ["Ġhello"]  # merges apply
    assert tok.encode("123").tokens == ["1", "2", "3"]  # smollm: digits one by one
    assert tok.get_vocab_size() == tiny_model.config.vocab_size


def test_special_tokens_are_skipped_when_decoding(tiny_model: ModelFiles) -> None:
    tok = Tokenizer.from_file(str(tiny_model.tokenizer_path))
    assert tok.decode(tok.encode("<|im_start|>ok<|im_end|>").ids) == "ok"


def test_unsupported_tokenizer_model_is_refused(tmp_path: Path) -> None:
    meta = {**_tiny_meta(tmp_path), "tokenizer.ggml.model": "llama"}
    with pytest.raises(ModelLoadError, match="'llama' is not supported"):
        tokenizer_from_metadata(meta)


def test_unknown_pretokenizer_is_refused(tmp_path: Path) -> None:
    meta = {**_tiny_meta(tmp_path), "tokenizer.ggml.pre": "exotic"}
    with pytest.raises(ModelLoadError, match="'exotic'"):
        tokenizer_from_metadata(meta)


def test_bad_merges_are_refused(tmp_path: Path) -> None:
    meta = {**_tiny_meta(tmp_path), "tokenizer.ggml.merges": ["nospace"]}
    with pytest.raises(ModelLoadError, match="merges"):
        tokenizer_from_metadata(meta)


def test_vocabulary_padding() -> None:
    tokens, types, merges = tiny_vocabulary(400)
    assert len(tokens) == len(types) == 400 and merges
    with pytest.raises(ConfigError):
        tiny_vocabulary(10)


def test_chat_template_renders_chatml(tiny_model: ModelFiles) -> None:
    assert tiny_model.chat_template == TINY_CHAT_TEMPLATE
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    expected = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                "<|im_start|>assistant\n")
    assert render_chat(TINY_CHAT_TEMPLATE, messages) == expected
    assert render_chat(None, messages) == expected
    assert render_chat(None, messages, add_generation_prompt=False) == expected[:-22]


def test_chat_template_is_sandboxed() -> None:
    hostile = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(ConfigError, match="chat template failed"):
        render_chat(hostile, [{"role": "user", "content": "x"}])
    with pytest.raises(ConfigError, match="does not parse"):
        render_chat("{% for %}", [{"role": "user", "content": "x"}])
    with pytest.raises(ConfigError, match="raise"):
        render_chat("{{ raise_exception('raise: no system role') }}",
                    [{"role": "user", "content": "x"}])


def test_chat_messages_are_validated() -> None:
    with pytest.raises(ConfigError, match="role"):
        render_chat(None, [{"content": "x"}])


@pytest.mark.model
def test_real_tokenizer_and_template(real_model: ModelFiles) -> None:
    tok = Tokenizer.from_file(str(real_model.tokenizer_path))
    # Pinned ids (SmolLM2's vocabulary): specials whole, digits one by one.
    assert tok.encode("<|im_start|>user\nWhat is 2+2?<|im_end|>\n").ids == [
        1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 2, 198]
    assert tok.encode("Hello, world! 12345").ids == [19556, 28, 905, 17, 216, 33, 34, 35, 36, 37]
    prompt = render_chat(real_model.chat_template, [{"role": "user", "content": "Hi"}])
    assert prompt == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained "
                      "by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                      "<|im_start|>assistant\n")

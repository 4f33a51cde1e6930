"""The decode loop on real onnxruntime sessions of tiny generated models (and the real model)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import tiny_model, tiny_model_exact

from workbench._engine import _decode
from workbench._engine._engine import Engine, Generation
from workbench._engine._gguf import read_gguf
from workbench._engine._model import ModelFiles
from workbench._engine._reference import reference_logits
from workbench._types import InferRequest
from workbench.errors import ConfigError, RunClosed

__all__ = ["tiny_model", "tiny_model_exact"]  # fixtures used below

CHAT = [{"role": "user", "content": "hello world, what is the model?"}]


def _request(agent: str = "a", **kwargs: object) -> InferRequest:
    fields: dict[str, object] = {"prompt": "hello the world and the agent", "max_tokens": 12,
                                 "index": 0}
    fields.update(kwargs)
    return InferRequest(agent=agent, **fields)  # type: ignore[arg-type]


def test_generate_returns_text_tokens_provider_and_timings(tiny_model: ModelFiles) -> None:
    with Engine(tiny_model, threads=1) as engine:
        g = engine.generate(CHAT, max_tokens=10)
    assert isinstance(g, Generation)
    assert len(g.tokens) == 10 and g.finish_reason == "length"
    assert g.provider == "CPUExecutionProvider"
    assert str(g) == g.text and g.prompt_tokens > 5
    assert g.prefill_s > 0 and g.decode_s > 0
    assert "tokens=10" in repr(g) and "tok/s" in repr(g)


def test_greedy_decoding_is_repeatable_across_engines(tiny_model: ModelFiles) -> None:
    with Engine(tiny_model, threads=1) as a, Engine(tiny_model, threads=1) as b:
        assert a.generate(CHAT, max_tokens=30).tokens == b.generate(CHAT, max_tokens=30).tokens
        assert a.generate(CHAT, max_tokens=30).tokens == a.generate(CHAT, max_tokens=30).tokens


def test_cached_decode_matches_the_fp32_reference_without_cache(
        tiny_model_exact: ModelFiles) -> None:
    """Every greedy token equals the argmax of a full, cache-free fp32 forward pass."""
    parsed = read_gguf(tiny_model_exact.folder / "tiny.gguf")
    with Engine(tiny_model_exact, threads=1) as engine:
        result = engine.infer_batch([_request(max_tokens=24)])[0]
        prompt = engine._encode(_request())
    ids = list(prompt)
    for token in result.tokens:
        logits = reference_logits(parsed.config, parsed.weights, ids)[-1]
        assert token == int(np.argmax(logits))
        ids.append(token)


@pytest.mark.invariance
def test_growing_cache_path_gives_the_same_tokens(tiny_model: ModelFiles,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Graphs without a shared buffer decode one sequence at a time with a growing cache."""
    with Engine(tiny_model, threads=1) as engine:
        requests = [_request(f"a{i}", prompt="the model " * (i + 1), max_tokens=15)
                    for i in range(3)]
        shared = engine.infer_batch(requests)
        layout = engine._session.layout
        monkeypatch.setattr(engine._session, "layout",
                            dataclasses.replace(layout, shared_kv=False))
        growing = engine.infer_batch(requests)
        assert engine.describe()["kv_cache"] == "growing"
    assert [r.tokens for r in growing] == [r.tokens for r in shared]


def test_stop_string_ends_generation_before_it(tiny_model: ModelFiles) -> None:
    with Engine(tiny_model, threads=1) as engine:
        full = engine.generate(CHAT, max_tokens=40)
        stop = full.text[len(full.text) // 2:][:3]
        assert stop.strip(), full.text
        cut = engine.generate(CHAT, max_tokens=40, stop=[stop])
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.tokens == full.tokens[: len(cut.tokens)]


def test_eos_token_stops_and_is_not_part_of_the_result(tiny_model: ModelFiles) -> None:
    with Engine(tiny_model, threads=1) as engine:
        first = engine.generate(CHAT, max_tokens=8).tokens
    config = dataclasses.replace(tiny_model.config, eos_token_ids=(first[3],))
    with Engine(dataclasses.replace(tiny_model, config=config), threads=1) as engine:
        g = engine.generate(CHAT, max_tokens=8)
    assert g.finish_reason == "stop"
    assert g.tokens == first[: first.index(first[3])]


def test_streaming_reports_every_token_in_order(tiny_model: ModelFiles) -> None:
    seen: list[tuple[str, int, int, str]] = []
    requests = [_request("x", max_tokens=7), _request("y", max_tokens=11, index=4)]
    with Engine(tiny_model, threads=1) as engine:
        results = engine.infer_batch(requests, on_token=lambda *a: seen.append(a))
    for request, result in zip(requests, results, strict=True):
        mine = [s for s in seen if s[0] == request.agent]
        assert [s[1] for s in mine] == [request.index] * len(result.tokens)
        assert tuple(s[2] for s in mine) == result.tokens
        assert "".join(s[3] for s in mine) == result.text


def test_context_limit_ends_generation_with_length(tmp_path: Path) -> None:
    from workbench._engine._tiny import make_tiny_model

    files = make_tiny_model(tmp_path, context=64)
    with Engine(files, threads=1) as engine:
        prompt = "hello " * 200
        too_long = engine.infer_batch([_request(prompt=prompt)])[0]
        ids = engine._encode(_request(prompt="hello world " * 10))
        near = engine.infer_batch([_request(prompt="hello world " * 10, max_tokens=100)])[0]
    assert too_long.finish_reason == "error" and "shorten" in str(too_long.error)
    assert near.finish_reason == "length"
    assert len(near.tokens) == 64 - len(ids) + 1


def test_invalid_request_is_an_error_result_not_an_exception(tiny_model: ModelFiles) -> None:
    with Engine(tiny_model, threads=1) as engine:
        results = engine.infer_batch([_request("a"), _request("b", top_p=0.0),
                                      _request("c")])
        with pytest.raises(ConfigError):
            engine.generate("hi", top_p=0.0)
    assert [r.finish_reason for r in results] == ["length", "error", "length"]
    assert results[0].tokens == results[2].tokens


def test_chat_template_gets_the_bos_token_text(tiny_model: ModelFiles) -> None:
    template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    files = dataclasses.replace(tiny_model, chat_template=template)
    with Engine(files, threads=1) as engine:
        ids = engine._encode(_request(messages=({"role": "user", "content": "hello"},),
                                      prompt=None))
    assert tiny_model.config.bos_token_id is not None
    assert ids[0] == tiny_model.config.bos_token_id and ids[1] != ids[0]


def test_empty_batch_gives_no_results(tiny_model: ModelFiles) -> None:
    with Engine(tiny_model, threads=1) as engine:
        assert engine.infer_batch([]) == []


def test_prefill_chunking_is_configured_and_described(tiny_model: ModelFiles) -> None:
    with Engine(tiny_model, threads=1) as one, Engine(tiny_model, threads=1,
                                                      prefill_chunk=4) as split:
        assert one.describe()["prefill_chunk"] is None
        assert split.describe()["prefill_chunk"] == 4
        a, b = one.generate(CHAT, max_tokens=12), split.generate(CHAT, max_tokens=12)
    assert len(a.tokens) == len(b.tokens) == 12


def test_describe_names_model_settings_and_provider(tiny_model: ModelFiles) -> None:
    with Engine(tiny_model, threads=2, max_batch=3) as engine:
        d = engine.describe()
    assert d["model"] == tiny_model.model_id and d["model_hash"] == tiny_model.model_hash
    assert (d["variant"], d["threads"], d["max_batch"]) == ("q4-int8act", 2, 3)
    assert d["provider"] == "CPUExecutionProvider" and d["kv_cache"] == "shared"


def test_close_is_idempotent_and_later_use_raises(tiny_model: ModelFiles) -> None:
    engine = Engine(tiny_model, threads=1)
    engine.close()
    engine.close()
    assert engine.describe()["provider"] == "CPUExecutionProvider"
    assert "closed" in repr(engine)
    with pytest.raises(RunClosed):
        engine.infer_batch([_request()])


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"max_batch": 0}, {"prefill_chunk": 0}])
def test_impossible_settings_are_rejected(tiny_model: ModelFiles,
                                          kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        Engine(tiny_model, **kwargs)  # type: ignore[arg-type]


def test_decode_statistics_count_prefill_and_decode(tiny_model: ModelFiles) -> None:
    with Engine(tiny_model, threads=1) as engine:
        engine.infer_batch([_request("a", max_tokens=5), _request("b", max_tokens=9)])
        stats = engine.last_stats
    assert stats.decode_tokens == 4 + 8  # the first token of each comes from its prefill
    assert stats.decode_steps == 8  # b is alone after a leaves the batch
    assert isinstance(stats, _decode.DecodeStats)


@pytest.mark.model
def test_default_model_names_colours() -> None:
    """The default model and variant answer a chat prompt sensibly, offline."""
    with Engine() as engine:
        g = engine.generate([{"role": "user", "content": "Name three colours."}],
                            max_tokens=32)
    colours = {"red", "blue", "green", "yellow", "orange", "purple", "black", "white",
               "pink", "brown"}
    assert len({c for c in colours if c in g.text.lower()}) >= 2, g.text

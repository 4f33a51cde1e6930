"""Batching must not change any sequence's tokens, and results come back in agent order."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import real_model, tiny_model, tiny_model_exact

from workbench._engine import _decode
from workbench._engine._engine import Engine
from workbench._engine._model import ModelFiles
from workbench._engine._sampling import SamplingParams
from workbench._engine._tiny import make_tiny_model
from workbench._types import InferRequest

__all__ = ["real_model", "tiny_model", "tiny_model_exact"]  # fixtures used below

WORDS = ("the", "and", "hello", "world", "agent", "model", "step", "token", "you", "is", "to",
         "of", "in", "it", "that", "what", "ok", "yes", "no", "Name three colours.")


def prompt_set(seed: int, *, chat: bool = False, max_tokens: int = 40) -> list[InferRequest]:
    """1-10 requests of random lengths, budgets and sampling settings (a pure function)."""
    rng = random.Random(seed)
    requests = []
    for i in range(rng.randint(1, 10)):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30)))
        body = {"messages": ({"role": "user", "content": text},)} if chat else {"prompt": text}
        requests.append(InferRequest(
            agent=f"agent{i}", index=seed, max_tokens=rng.randint(1, max_tokens),
            temperature=rng.choice([0.0, 0.0, 0.7, 1.3]), top_k=rng.choice([0, 0, 5, 40]),
            top_p=rng.choice([1.0, 0.9]), sampling_key=rng.getrandbits(64),
            **body))  # type: ignore[arg-type]
    return requests


def assert_batch_invariant(engine: Engine, requests: list[InferRequest]) -> None:
    batched = engine.infer_batch(requests)
    solo = [engine.infer_batch([r])[0] for r in requests]
    for request, b, s in zip(requests, batched, solo, strict=True):
        assert b.tokens == s.tokens, (request, b, s)
        assert (b.text, b.finish_reason, b.prompt_tokens) == (s.text, s.finish_reason,
                                                              s.prompt_tokens)


@pytest.mark.invariance
def test_batched_equals_solo_over_50_prompt_sets(tiny_model: ModelFiles) -> None:
    with Engine(tiny_model, threads=2, max_batch=8) as engine:
        for seed in range(50):
            assert_batch_invariant(engine, prompt_set(seed))


@pytest.mark.invariance
def test_batched_equals_solo_in_groups_of_max_batch(tiny_model: ModelFiles) -> None:
    with Engine(tiny_model, threads=2, max_batch=3) as engine:
        for seed in range(10):
            assert_batch_invariant(engine, prompt_set(1000 + seed))


@pytest.mark.invariance
def test_batched_equals_solo_with_chunked_prefill(tiny_model: ModelFiles) -> None:
    with Engine(tiny_model, threads=1, prefill_chunk=5) as engine:
        for seed in range(10):
            assert_batch_invariant(engine, prompt_set(2000 + seed))


@pytest.fixture(scope="module")
def wide_exact_model(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    """SmolLM2's layer widths (576, 9/3 heads) in two layers, fp32 activations: the case
    where onnxruntime's one-row kernel rounds differently."""
    folder: Path = tmp_path_factory.mktemp("wide-exact")
    return make_tiny_model(folder, hidden=576, heads=9, kv_heads=3, vocab=2000, exact=True)


@pytest.mark.invariance
def test_exact_variant_is_decoded_with_a_padding_row(wide_exact_model: ModelFiles) -> None:
    with Engine(wide_exact_model, threads=1) as engine:
        assert engine.describe()["min_decode_rows"] == 2
        for seed in range(5):
            assert_batch_invariant(engine, prompt_set(3000 + seed, max_tokens=12))


@pytest.mark.invariance
def test_logits_are_bitwise_identical_batched_and_solo(wide_exact_model: ModelFiles,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Stronger than equal tokens: every row sees exactly the same logits."""
    seen: dict[tuple[str, int, int], np.ndarray] = {}
    mode = ["batched"]
    choose = _decode.choose_token

    def spy(logits: np.ndarray, params: SamplingParams, position: int) -> int:
        seen[(mode[0], params.key, position)] = logits.copy()
        return choose(logits, params, position)

    monkeypatch.setattr(_decode, "choose_token", spy)
    requests = [InferRequest(agent=f"a{i}", index=0, prompt="hello world " * (i + 1),
                             max_tokens=6 + 2 * i, sampling_key=i) for i in range(4)]
    with Engine(wide_exact_model, threads=2) as engine:
        engine.infer_batch(requests)
        mode[0] = "solo"
        for r in requests:
            engine.infer_batch([r])
    keys = [k[1:] for k in seen if k[0] == "batched"]
    assert len(keys) == sum(r.max_tokens for r in requests)
    for key in keys:
        assert np.array_equal(seen[("batched", *key)], seen[("solo", *key)]), key


def test_results_come_back_in_request_order(tiny_model: ModelFiles) -> None:
    requests = prompt_set(7)
    with Engine(tiny_model, threads=1, max_batch=2) as engine:
        forward = engine.infer_batch(requests)
        backward = engine.infer_batch(requests[::-1])
    assert [r.tokens for r in forward] == [r.tokens for r in backward[::-1]]


def test_finished_sequences_leave_the_batch(tiny_model: ModelFiles) -> None:
    requests = [InferRequest(agent=f"a{i}", index=0, prompt="the model", max_tokens=n)
                for i, n in enumerate([2, 10, 5])]
    with Engine(tiny_model, threads=1) as engine:
        engine.infer_batch(requests)
        stats = engine.last_stats
    assert stats.decode_steps == 9  # the longest request's steps
    assert stats.decode_tokens == 1 + 9 + 4  # rows shrink as sequences finish


def test_sampling_is_seeded_by_the_request_key(tiny_model: ModelFiles) -> None:
    def sample(key: int) -> tuple[int, ...]:
        request = InferRequest(agent="a", index=0, prompt="hello", max_tokens=20,
                               temperature=1.5, sampling_key=key)
        return engine.infer_batch([request])[0].tokens

    with Engine(tiny_model, threads=1) as engine:
        assert sample(1) == sample(1)
        assert sample(1) != sample(2)


@pytest.mark.model
def test_batching_does_not_change_tokens_on_the_real_model(real_model: ModelFiles) -> None:
    """The exact variant (fp32 activations, slow on CPU): one prompt set, short answers."""
    with Engine(real_model, threads=2) as engine:
        assert_batch_invariant(engine, prompt_set(3, chat=True, max_tokens=8))


@pytest.mark.model
def test_batching_does_not_change_tokens_on_the_default_variant() -> None:
    with Engine(threads=2) as engine:
        for seed in range(3):
            assert_batch_invariant(engine, prompt_set(10 + seed, chat=True, max_tokens=16))


def test_the_decode_row_floor_follows_the_row_probe(tiny_model: ModelFiles,
                                                    wide_exact_model: ModelFiles) -> None:
    """min_decode_rows=None takes 1 only where this CPU's one-row kernels were checked to
    round like the batched ones; fp32-activation graphs never qualify (measured on AVX-512,
    AVX2 and AVX alike), and an explicit value is kept."""
    from workbench._engine._rowprobe import one_row_is_exact

    with Engine(wide_exact_model, threads=2) as exact:
        assert not one_row_is_exact(exact._session.scan.matmul_nbits, 2)
        assert exact.min_decode_rows == 2
    with Engine(tiny_model, threads=2) as fast:
        probe = one_row_is_exact(fast._session.scan.matmul_nbits, 2)
        assert fast.min_decode_rows == (1 if probe else 2)
        assert {level for *_, level in fast._session.scan.matmul_nbits} == {4}
    with Engine(tiny_model, threads=2, min_decode_rows=2) as forced:
        assert forced.describe()["min_decode_rows"] == 2

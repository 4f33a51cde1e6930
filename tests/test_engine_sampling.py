"""Seeded sampling and stop strings: pure functions of their inputs, no global RNG."""

from __future__ import annotations

import random

import numpy as np
import pytest

from workbench._engine._sampling import SamplingParams, TextStream, choose_token, uniform


def _logits(seed: int, vocab: int = 1000) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(vocab).astype(np.float32) * 3


def test_greedy_is_argmax_with_lowest_index_on_ties() -> None:
    logits = np.array([0.5, 2.0, -1.0, 2.0], np.float32)
    assert choose_token(logits, SamplingParams(), 0) == 1
    assert choose_token(logits, SamplingParams(key=99), 7) == 1


def test_uniform_is_a_pure_function_of_key_and_position() -> None:
    draws = [uniform(5, p) for p in range(100)]
    assert draws == [uniform(5, p) for p in range(100)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert len(set(draws)) == 100
    assert draws != [uniform(6, p) for p in range(100)]
    assert uniform(2**64 + 5, 3) == uniform(5, 3)  # keys are taken modulo 2**64


def test_sampling_does_not_touch_global_random_state() -> None:
    np_state, py_state = np.random.get_state(), random.getstate()
    params = SamplingParams(temperature=1.0, top_p=0.9, key=3)
    first = [choose_token(_logits(1), params, p) for p in range(50)]
    np.random.seed(123)
    random.seed(123)
    assert [choose_token(_logits(1), params, p) for p in range(50)] == first
    np.random.set_state(np_state)
    random.setstate(py_state)


def test_sampled_frequencies_follow_the_softmax() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], np.float32))
    params = SamplingParams(temperature=1.0, key=11)
    counts = np.bincount([choose_token(logits, params, p) for p in range(4000)], minlength=4)
    assert np.allclose(counts / 4000, [0.5, 0.3, 0.15, 0.05], atol=0.03)


def test_temperature_sharpens_and_flattens() -> None:
    logits = np.log(np.array([0.6, 0.4], np.float32))
    cold = SamplingParams(temperature=0.05, key=1)
    hot = SamplingParams(temperature=50.0, key=1)
    assert sum(choose_token(logits, cold, p) for p in range(500)) < 5
    assert 200 < sum(choose_token(logits, hot, p) for p in range(500)) < 300


def test_top_k_keeps_only_the_k_highest() -> None:
    logits = _logits(2)
    allowed = set(np.argsort(-logits)[:5].tolist())
    params = SamplingParams(temperature=5.0, top_k=5, key=4)
    picked = {choose_token(logits, params, p) for p in range(300)}
    assert picked <= allowed
    assert len(picked) == 5
    assert choose_token(logits, SamplingParams(temperature=1.0, top_k=1, key=4), 0) == int(
        np.argmax(logits))


def test_top_k_breaks_ties_by_token_id() -> None:
    logits = np.array([1.0, 3.0, 3.0, 3.0, 0.0], np.float32)
    params = SamplingParams(temperature=1.0, top_k=2, key=8)
    assert {choose_token(logits, params, p) for p in range(200)} == {1, 2}


def test_top_p_keeps_the_smallest_nucleus() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], np.float32))
    params = SamplingParams(temperature=1.0, top_p=0.75, key=9)
    assert {choose_token(logits, params, p) for p in range(300)} == {0, 1}
    tiny = SamplingParams(temperature=1.0, top_p=0.01, key=9)
    assert {choose_token(logits, tiny, p) for p in range(50)} == {0}


@pytest.mark.parametrize("kwargs", [{"temperature": -1.0}, {"temperature": float("nan")},
                                    {"top_k": -1}, {"top_p": 0.0}, {"top_p": 1.5}])
def test_invalid_parameters_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)  # type: ignore[arg-type]


# --- TextStream -------------------------------------------------------------------------------

PIECES = {1: b"Hel", 2: b"lo", 3: b" wor", 4: b"ld", 5: b"!", 6: b"\xe2\x82", 7: b"\xac",
          8: b" EN", 9: b"D", 10: b" E"}


def _decode(ids: list[int] | tuple[int, ...]) -> str:
    return b"".join(PIECES[i] for i in ids).decode("utf-8", errors="replace")


def _run(tokens: list[int], stop: tuple[str, ...] = ()) -> tuple[list[str], TextStream]:
    stream = TextStream(_decode, stop)
    pieces = []
    for t in tokens:
        pieces.append(stream.push(t))
        if stream.stopped:
            return pieces, stream
    pieces.append(stream.finish())
    return pieces, stream


def test_stream_pieces_add_up_to_the_text() -> None:
    pieces, stream = _run([1, 2, 3, 4, 5])
    assert pieces[:5] == ["Hel", "lo", " wor", "ld", "!"]
    assert stream.text == "Hello world!" == "".join(pieces)


def test_incomplete_utf8_is_held_until_complete() -> None:
    pieces, stream = _run([1, 6, 7, 5])
    assert pieces[:4] == ["Hel", "", "€", "!"]
    assert stream.text == "Hel€!"


def test_stop_string_across_tokens_cuts_the_text_before_it() -> None:
    pieces, stream = _run([1, 2, 8, 9, 5], stop=(" END",))
    assert stream.stopped
    assert stream.text == "Hello" == "".join(pieces)
    assert " EN" not in "".join(pieces)  # held back, never streamed then taken back


def test_held_back_prefix_is_released_when_it_does_not_stop() -> None:
    pieces, stream = _run([1, 10, 3, 4], stop=(" END",))
    assert not stream.stopped
    assert pieces[1] == ""  # " E" might start " END"
    assert stream.text == "Hel E world" == "".join(pieces)


def test_pushing_after_a_stop_is_an_error() -> None:
    _, stream = _run([1, 2], stop=("lo",))
    assert stream.stopped and stream.text == "Hel"
    with pytest.raises(ValueError):
        stream.push(3)

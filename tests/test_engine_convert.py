"""GGUF -> ONNX conversion: losslessness, agreement with the numpy reference, calling modes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gguf
import numpy as np
import onnxruntime as ort
import pytest
from engine_helpers import (
    empty_past,
    new_kv_buffers,
    prefill_logits,
    real_model_exact,
    right_padded_mask,
    run_shared,
    session,
    tiny_model,
    tiny_model_exact,
)

from workbench._engine._convert import convert_gguf
from workbench._engine._gguf import read_gguf
from workbench._engine._graph import ACCURACY_EXACT, ACCURACY_INT8, build_llama_graph
from workbench._engine._model import ModelFiles
from workbench._engine._reference import reference_logits
from workbench._engine._tiny import write_tiny_gguf
from workbench.errors import ConfigError, ModelLoadError

__all__ = ["real_model_exact", "tiny_model", "tiny_model_exact"]  # fixtures used by name

IDS = [1, 5, 100, 200, 7, 8, 9, 300, 2, 45, 17, 260, 33, 34, 290, 11]


def _reference(files: ModelFiles, ids: list[int]) -> np.ndarray:
    return reference_logits(files.config, read_gguf(files.folder / "tiny.gguf").weights, ids)


@pytest.mark.parametrize("matrix_type", ["Q4_1", "Q4_0"])
def test_quantised_matrices_are_reencoded_bit_exactly(tmp_path: Path, matrix_type: str) -> None:
    path = write_tiny_gguf(tmp_path / "t.gguf", matrix_type=matrix_type)
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    weights = read_gguf(path).weights
    for name, linear in (("blk.0.attn_q.weight", weights.layers[0].q),
                         ("blk.1.ffn_down.weight", weights.layers[1].down),
                         ("token_embd.weight", weights.embedding)):
        tensor = tensors[name]
        expected = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        assert np.array_equal(linear.dequantize(), expected), name


def test_exact_variant_matches_reference(tiny_model_exact: ModelFiles) -> None:
    ref = _reference(tiny_model_exact, IDS)
    got = prefill_logits(session(tiny_model_exact), tiny_model_exact.config, IDS)
    assert np.abs(got - ref).max() < 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_fast_variant_is_close_to_reference(tiny_model: ModelFiles) -> None:
    vocab = tiny_model.config.vocab_size
    ids = [int(i) for i in np.random.default_rng(3).integers(3, vocab, 64)]
    ref = _reference(tiny_model, ids)
    got = prefill_logits(session(tiny_model), tiny_model.config, ids)
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.8
    assert np.abs(got - ref).max() < 0.1 * float(np.abs(ref).max())


@pytest.mark.parametrize("matrix_type", ["Q4_0", "Q8_0", "F16", "F32"])
def test_other_supported_types_convert_exactly(tmp_path: Path, matrix_type: str) -> None:
    source = write_tiny_gguf(tmp_path / "tiny.gguf", matrix_type=matrix_type)
    files = convert_gguf(source, tmp_path, variant="q4-fp32act")
    ref = _reference(files, IDS)
    got = prefill_logits(session(files), files.config, IDS)
    assert np.abs(got - ref).max() < 1e-4 * max(1.0, float(np.abs(ref).max()))


@pytest.mark.parametrize("accuracy", [ACCURACY_INT8, ACCURACY_EXACT])
@pytest.mark.parametrize("biases", [False, True])
def test_packed_products_change_no_bit(tmp_path: Path, accuracy: int, biases: bool) -> None:
    """q/k/v and gate/up as one product each (Q4_1: one shared correction) give bitwise the
    logits of one product per matrix, in one row and in a batch; q/k/v biases (Qwen2-style,
    here with k unbiased) are packed with them."""
    parsed = read_gguf(write_tiny_gguf(tmp_path / "t.gguf"))
    weights = parsed.weights
    if biases:
        rng = np.random.default_rng(5)
        layers = [dataclasses.replace(
            layer, q_bias=rng.standard_normal(layer.q.n_out).astype(np.float32),
            v_bias=rng.standard_normal(layer.v.n_out).astype(np.float32))
            for layer in weights.layers]
        weights = dataclasses.replace(weights, layers=layers)
    ids = np.asarray([IDS, IDS[::-1]], np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids),
             **empty_past(parsed.config, batch=2)}
    logits = []
    for pack in (True, False):
        graph = build_llama_graph(parsed.config, weights, accuracy_level=accuracy, pack=pack)
        sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
        logits.append(sess.run(["logits"], feeds)[0])
        ops = {node.op_type for node in graph.graph.node}
        assert ("Split" in ops) == pack
    assert np.array_equal(logits[0], logits[1])
    if biases:
        ref = reference_logits(parsed.config, weights, IDS)
        assert np.abs(logits[1][0] - ref).max() < 0.1 * float(np.abs(ref).max())


def test_unsupported_tensor_type_is_named(tmp_path: Path) -> None:
    source = write_tiny_gguf(tmp_path / "tiny.gguf", matrix_type="Q5_0")
    with pytest.raises(ModelLoadError, match=r"blk\.0\.attn_q\.weight.*Q5_0"):
        convert_gguf(source, tmp_path / "out")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("llama.rope.scaling.type", "linear", "rope scaling"),
    ("llama.rope.dimension_count", 8, "partial rotary"),
    ("general.architecture", "gpt2", "not supported"),
    ("llama.attention.head_count_kv", 3, "does not divide"),
])
def test_unsupported_configurations_are_refused(tmp_path: Path, key: str, value: object,
                                                message: str) -> None:
    from workbench._engine._gguf import _config

    meta = {**read_gguf(write_tiny_gguf(tmp_path / "t.gguf")).metadata, key: value,
            "llama.rope.scaling.factor": 2.0}
    with pytest.raises(ModelLoadError, match=message):
        _config(meta, None)


def test_unknown_variant_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="variant"):
        convert_gguf(write_tiny_gguf(tmp_path / "t.gguf"), tmp_path, variant="q2")


def test_conversion_is_deterministic(tmp_path: Path) -> None:
    source = write_tiny_gguf(tmp_path / "t.gguf")
    a = convert_gguf(source, tmp_path / "a")
    b = convert_gguf(source, tmp_path / "b")
    assert a.onnx_path.read_bytes() == b.onnx_path.read_bytes()
    assert a.model_hash == b.model_hash


# --- the calling convention documented in _graph.py ----------------------------------------

ROWS = [[1, 5, 100, 200, 7, 8, 9], [1, 50, 60], [1, 300, 301, 302, 303, 4]]
NEXT = [10, 11, 12]
MAX_LEN = 32


@pytest.fixture(scope="module")
def row_refs(tiny_model_exact: ModelFiles) -> list[np.ndarray]:
    return [_reference(tiny_model_exact, row + NEXT) for row in ROWS]


def test_prefill_one_sequence_both_mask_widths(tiny_model_exact: ModelFiles,
                                               row_refs: list[np.ndarray]) -> None:
    sess, config = session(tiny_model_exact), tiny_model_exact.config
    for row, ref in zip(ROWS, row_refs, strict=True):
        ids = np.asarray([row])
        for width in (len(row), MAX_LEN):
            buffers = new_kv_buffers(config, 1, MAX_LEN)
            logits = run_shared(sess, buffers, ids, right_padded_mask([len(row)], width))
            assert np.abs(logits[0] - ref[: len(row)]).max() < 1e-4


def test_prefill_in_chunks(tiny_model_exact: ModelFiles, row_refs: list[np.ndarray]) -> None:
    sess, config = session(tiny_model_exact), tiny_model_exact.config
    row, ref = ROWS[0] + NEXT, row_refs[0]
    buffers = new_kv_buffers(config, 1, MAX_LEN)
    run_shared(sess, buffers, np.asarray([row[:4]]), right_padded_mask([4], MAX_LEN))
    logits = run_shared(sess, buffers, np.asarray([row[4:]]),
                        right_padded_mask([len(row)], MAX_LEN))
    assert np.abs(logits[0] - ref[4:]).max() < 1e-4


def test_batched_prefill_then_decode_with_different_lengths(
        tiny_model_exact: ModelFiles, row_refs: list[np.ndarray]) -> None:
    sess, config = session(tiny_model_exact), tiny_model_exact.config
    lengths = [len(r) for r in ROWS]
    ids = np.zeros((len(ROWS), max(lengths)), np.int64)
    for b, row in enumerate(ROWS):
        ids[b, : len(row)] = row
    buffers = new_kv_buffers(config, len(ROWS), MAX_LEN)
    logits = run_shared(sess, buffers, ids, right_padded_mask(lengths, max(lengths)))
    for b, length in enumerate(lengths):
        assert np.abs(logits[b, :length] - row_refs[b][:length]).max() < 1e-4
    for step, token in enumerate(NEXT):
        now = [n + step + 1 for n in lengths]
        width = MAX_LEN if step != 1 else max(now)  # any width from max(now) to MAX_LEN
        logits = run_shared(sess, buffers, np.full((len(ROWS), 1), token),
                            right_padded_mask(now, width))
        for b, length in enumerate(lengths):
            assert np.abs(logits[b, 0] - row_refs[b][length + step]).max() < 1e-4


def test_logits_are_bit_identical_across_sessions_and_batch_rows(
        tiny_model: ModelFiles) -> None:
    config = tiny_model.config
    one = prefill_logits(session(tiny_model), config, ROWS[0])
    two = prefill_logits(session(tiny_model, threads=2), config, ROWS[0])
    assert np.array_equal(one, two)
    ids = np.asarray([ROWS[0]] * 4)
    batch = run_shared(session(tiny_model), new_kv_buffers(config, 4, MAX_LEN), ids,
                       np.ones_like(ids))
    assert np.array_equal(batch[2], one)


# --- the real model ------------------------------------------------------------------------

TEXT = ("The history of the printing press begins in the fifteenth century, when Johannes "
        "Gutenberg combined movable metal type, oil-based inks and a wooden press adapted from "
        "wine making. Within fifty years, presses had spread to more than two hundred cities "
        "across Europe, and the price of books fell sharply. Scholars could compare identical "
        "copies of a text, which changed how knowledge was checked and shared. Printers also "
        "became publishers, editors and booksellers, and they shaped the spelling and grammar "
        "of many languages. The same machine that printed bibles printed pamphlets, calendars "
        "and news, and so it helped to spread new religious and political ideas. Historians "
        "still argue about which of these changes mattered most.")


def agreement(files: ModelFiles, ids: list[int], source: Path) -> float:
    """Top-1 agreement of the converted model with the fp32 reference, teacher-forced."""
    ref = reference_logits(files.config, read_gguf(source).weights, ids)
    got = prefill_logits(session(files, threads=2), files.config, ids)
    return float((got.argmax(-1) == ref.argmax(-1)).mean())


@pytest.mark.model
@pytest.mark.slow
def test_real_model_exact_variant_agrees_with_reference(real_model_exact: ModelFiles) -> None:
    from tokenizers import Tokenizer

    from workbench._engine._store import KNOWN_MODELS, cache_root

    ids = Tokenizer.from_file(str(real_model_exact.tokenizer_path)).encode(TEXT).ids[:128]
    assert len(ids) == 128
    source = cache_root() / "sources" / Path(KNOWN_MODELS["smollm2-135m-instruct"].member).name
    assert agreement(real_model_exact, ids, source) >= 0.99

"""Shared engine test fixtures and helpers: tiny models, KV buffers, shared-buffer runs.

Import the fixtures into a test module (``from engine_helpers import tiny_model``); they are
session-scoped, so the tiny model is written and converted once per test run (~50 ms).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from workbench._engine._model import ModelConfig, ModelFiles
from workbench._engine._tiny import make_tiny_model

__all__ = ["empty_past", "new_kv_buffers", "real_model", "real_model_exact", "run_shared",
           "tiny_model", "tiny_model_exact"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    """The default tiny model (fast variant: int8 activations), 2 layers, hidden 64, GQA 4/2."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-fast"))


@pytest.fixture(scope="session")
def tiny_model_exact(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    """The same weights in the exact variant (fp32 activations)."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-exact"), exact=True)


@pytest.fixture(scope="session")
def real_model() -> ModelFiles:
    """The default SmolLM2 model, default (fast) variant; fetched and converted once into the
    user's cache ($WORKBENCH_CACHE)."""
    from workbench._engine._store import DEFAULT_MODEL, resolve_model

    return resolve_model(DEFAULT_MODEL, progress=False)


@pytest.fixture(scope="session")
def real_model_exact() -> ModelFiles:
    """The default model in the exact variant (fp32 activations), for verification."""
    from workbench._engine._store import DEFAULT_MODEL, resolve_model

    return resolve_model(DEFAULT_MODEL, progress=False, variant="q4-fp32act")


def session(files: ModelFiles, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(files.onnx_path), options,
                                providers=["CPUExecutionProvider"])


def empty_past(config: ModelConfig, batch: int = 1) -> dict[str, np.ndarray]:
    """past_key_values.* feeds of length 0 (no shared buffer)."""
    empty = np.zeros((batch, config.num_kv_heads, 0, config.head_dim), np.float32)
    return {f"past_key_values.{i}.{part}": empty
            for i in range(config.num_layers) for part in ("key", "value")}


def prefill_logits(sess: ort.InferenceSession, config: ModelConfig,
                   ids: list[int]) -> np.ndarray:
    """Logits [len(ids), vocab] of one sequence in one pass."""
    row = np.asarray([ids], np.int64)
    feeds = {"input_ids": row, "attention_mask": np.ones_like(row), **empty_past(config)}
    return np.asarray(sess.run(["logits"], feeds)[0][0])


def new_kv_buffers(config: ModelConfig, batch: int,
                   max_len: int) -> dict[tuple[int, str], ort.OrtValue]:
    """One zeroed [batch, kv_heads, max_len, head_dim] buffer per layer and part."""
    shape = (batch, config.num_kv_heads, max_len, config.head_dim)
    return {(i, part): ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32))
            for i in range(config.num_layers) for part in ("key", "value")}


def run_shared(sess: ort.InferenceSession, buffers: dict[tuple[int, str], ort.OrtValue],
               ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One call with each buffer bound as both past and present (the shared-buffer mode)."""
    binding = sess.io_binding()
    binding.bind_cpu_input("input_ids", np.ascontiguousarray(ids, np.int64))
    binding.bind_cpu_input("attention_mask", np.ascontiguousarray(mask, np.int64))
    for (i, part), value in buffers.items():
        binding.bind_ortvalue_input(f"past_key_values.{i}.{part}", value)
        binding.bind_ortvalue_output(f"present.{i}.{part}", value)
    binding.bind_output("logits")
    sess.run_with_iobinding(binding)
    return np.asarray(binding.copy_outputs_to_cpu()[-1])


def right_padded_mask(lengths: list[int], width: int) -> np.ndarray:
    mask = np.zeros((len(lengths), width), np.int64)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    return mask


def write_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path

"""Hostile model files: every mutation ends in ModelLoadError or a clean load, never a crash.

1,000 mutated ONNX graphs and 200 mutated GGUF files of the tiny model go through one
restartable :class:`Validator` child (a crash or overrun restarts it and fails only that file).
The mutations are seeded, so a failure reproduces.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from engine_helpers import tiny_model
from onnx import TensorProto

from workbench._engine._model import ModelFiles
from workbench._engine._tiny import write_tiny_gguf
from workbench._engine._validate import Validator
from workbench.errors import ModelLoadError

__all__ = ["tiny_model"]

ONNX_CASES = 1000
GGUF_CASES = 200
OPS = ["Add", "MatMul", "Gather", "Reshape", "GroupQueryAttention", "MatMulNBits", "Cast",
       "NoSuchOp", "Loop", "If", "Identity", "ReduceSum"]
INTS = [0, -1, 1, 2, 3, 7, 8, 64, 2**31 - 1, -(2**31), 2**40]


def _bytes_mutation(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:  # flip a few bytes, biased towards the start (headers, graph structure)
        for _ in range(rng.randint(1, 8)):
            pos = min(int(rng.expovariate(1 / 4096)), len(buf) - 1)
            buf[pos] = rng.randrange(256)
    elif kind == 1:
        del buf[rng.randrange(len(buf)):]
    elif kind == 2:
        pos = rng.randrange(len(buf))
        buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        pos = rng.randrange(len(buf))
        buf[pos:pos + 8] = b"\xff" * 8
    return bytes(buf)


def _structural_mutation(base: onnx.ModelProto, rng: random.Random) -> bytes:
    model = onnx.ModelProto()
    model.CopyFrom(base)
    for _ in range(rng.randint(1, 3)):
        node = model.graph.node[rng.randrange(len(model.graph.node))]
        rng.choice(_MUTATORS)(model, node, rng)
    return model.SerializeToString()


def _rewire(model: onnx.ModelProto, node: onnx.NodeProto, rng: random.Random) -> None:
    names = [n for x in model.graph.node for n in x.output] + [i.name for i in model.graph.input]
    if node.input:
        node.input[rng.randrange(len(node.input))] = rng.choice([*names, "missing", ""])


def _opset(model: onnx.ModelProto, node: onnx.NodeProto, rng: random.Random) -> None:
    opset = model.opset_import[rng.randrange(len(model.opset_import))]
    opset.version = rng.choice([0, 1, 7, 99, 10**6])


_MUTATORS: list[Callable[[onnx.ModelProto, onnx.NodeProto, random.Random], None]] = [
    lambda m, n, r: setattr(n, "op_type", r.choice(OPS)),
    lambda m, n, r: m.graph.node.remove(n),
    _rewire,
    lambda m, n, r: _mutate_attribute(n, r),
    lambda m, n, r: _mutate_initializer(m.graph, r),
    lambda m, n, r: _mutate_input_dims(m.graph, r),
    _opset,
    lambda m, n, r: setattr(n, "domain", r.choice(["", "com.microsoft", "ai.onnx.ml", "evil"])),
    lambda m, n, r: _external_data(m.graph, r),
]


def _mutate_attribute(node: onnx.NodeProto, rng: random.Random) -> None:
    if node.attribute:
        attr = node.attribute[rng.randrange(len(node.attribute))]
        if attr.type == onnx.AttributeProto.INT:
            attr.i = rng.choice(INTS)
        elif attr.type == onnx.AttributeProto.FLOAT:
            attr.f = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e30])


def _mutate_initializer(graph: onnx.GraphProto, rng: random.Random) -> None:
    tensor = graph.initializer[rng.randrange(len(graph.initializer))]
    if tensor.dims and rng.random() < 0.5:
        tensor.dims[rng.randrange(len(tensor.dims))] = rng.choice(INTS)
    else:
        tensor.data_type = rng.choice([TensorProto.FLOAT, TensorProto.INT64, TensorProto.UINT8,
                                       TensorProto.STRING, 0, 99])


def _mutate_input_dims(graph: onnx.GraphProto, rng: random.Random) -> None:
    dims = graph.input[rng.randrange(len(graph.input))].type.tensor_type.shape.dim
    if dims:
        dims[rng.randrange(len(dims))].dim_value = rng.choice([0, 1, 3, 2**40])


def _external_data(graph: onnx.GraphProto, rng: random.Random) -> None:
    tensor = graph.initializer[rng.randrange(len(graph.initializer))]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location",
                             value=rng.choice(["../x.bin", "/etc/hostname", "weights.bin",
                                               "model.onnx", ""]))
    if rng.random() < 0.5:
        tensor.external_data.add(key="offset", value=str(rng.choice(INTS)))


def _tally(outcomes: Counter[str], run: Callable[[], object]) -> None:
    try:
        run()
        outcomes["loaded"] += 1
    except ModelLoadError:
        outcomes["refused"] += 1


@pytest.mark.slow
def test_mutated_onnx_files_never_crash_the_caller(tiny_model: ModelFiles,
                                                   tmp_path: Path) -> None:
    base = onnx.load(str(tiny_model.onnx_path))
    data = tiny_model.onnx_path.read_bytes()
    rng = random.Random(1234)
    target = tmp_path / "model.onnx"
    outcomes: Counter[str] = Counter()
    with Validator(timeout_s=20) as validator:
        for _ in range(ONNX_CASES):
            mutated = _bytes_mutation(data, rng) if rng.random() < 0.4 \
                else _structural_mutation(base, rng)
            target.write_bytes(mutated)
            _tally(outcomes, lambda: validator.check_onnx(target))
        assert validator.check_onnx(tiny_model.onnx_path)["layers"] == 2  # still serving
    assert sum(outcomes.values()) == ONNX_CASES
    assert outcomes["refused"] > ONNX_CASES // 4 and outcomes["loaded"] > 0, outcomes


@pytest.mark.slow
def test_mutated_gguf_files_never_crash_the_caller(tmp_path: Path) -> None:
    data = write_tiny_gguf(tmp_path / "tiny.gguf").read_bytes()
    rng = random.Random(99)
    source = tmp_path / "mutated.gguf"
    outcomes: Counter[str] = Counter()
    with Validator(timeout_s=20) as validator:
        for case in range(GGUF_CASES):
            source.write_bytes(_bytes_mutation(data, rng))
            out = tmp_path / f"out{case}"
            _tally(outcomes, lambda out=out: validator.convert_gguf(
                source, out, "q4-int8act", "fuzz", "0" * 64))
    assert sum(outcomes.values()) == GGUF_CASES
    assert outcomes["refused"] > GGUF_CASES // 4 and outcomes["loaded"] > 0, outcomes

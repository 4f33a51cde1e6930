"""Does a lone row take a kernel that rounds differently, on this CPU, for this graph?

onnxruntime's ``MatMulNBits`` has a separate kernel for a single row on some instruction
sets (docs/engine.md, "Batch invariance per CPU"): where it rounds differently from the
blocked kernel used for two rows and more, a sequence decoded alone would get other tokens
than the same sequence in a batch, and decode steps must run at least two rows. Where the two
kernels agree bit for bit, one row is exact and about a quarter faster for a lone sequence.

:func:`one_row_is_exact` decides it by running each ``MatMulNBits`` configuration of the
graph (its K, N, bits, block size and accuracy level; N capped, which keeps the kernel) on
random rows, alone and inside a two-row batch, with the engine's thread count, and comparing
the bits. It costs tens of milliseconds at load. Every other operator of the converted graph
was measured to be row-invariant on every instruction set (``benchmarks/invariance.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

__all__ = ["NBitsConfig", "one_row_is_exact", "op_session"]

NBitsConfig = tuple[int, int, int, int, int]
"""(K, N, bits, block_size, accuracy_level) of one MatMulNBits node."""

_MAX_N = 1024
"""Output columns probed per configuration (the kernels tile N; a multiple of 16 keeps the
same code path as the full width)."""
_ROWS = 4


def one_row_is_exact(configs: Iterable[NBitsConfig], threads: int) -> bool:
    """True when, for every configuration, a row computed alone equals the same row computed
    with another beside it, bit for bit, on this CPU. False on any difference or error.
    Each (configuration, threads) is probed once per process: the kernels do not change."""
    try:
        return all(_agrees(config, threads) for config in sorted(set(configs)))
    except Exception:  # an unexpected graph or build: take the always-exact path
        return False


def op_session(nodes: Sequence[Any], inputs: Sequence[Any], outputs: Sequence[Any],
               initializers: Sequence[Any], threads: int) -> ort.InferenceSession:
    """A CPU session of a small graph of ``nodes`` (ONNX opset 17 and com.microsoft)."""
    graph = helper.make_graph(list(nodes), "probe", list(inputs), list(outputs),
                              initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 9
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


@functools.cache
def _agrees(config: NBitsConfig, threads: int) -> bool:
    rng = np.random.default_rng(0)
    k, n, bits, block, level = config
    n = min(n, _MAX_N)
    blocks = (k + block - 1) // block
    weights = rng.integers(0, 256, (n, blocks, block * bits // 8), dtype=np.uint8)
    scales = (rng.random(n * blocks, dtype=np.float32) * 0.02).astype(np.float32)
    node = helper.make_node("MatMulNBits", ["x", "w", "s"], ["y"], domain="com.microsoft",
                            K=k, N=n, bits=bits, block_size=block, accuracy_level=level)
    session = op_session([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", k])],
                         [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["M", n])],
                         [numpy_helper.from_array(weights, "w"),
                          numpy_helper.from_array(scales, "s")], threads)
    rows = rng.standard_normal((_ROWS + 1, k)).astype(np.float32)
    for i in range(_ROWS):
        alone = session.run(None, {"x": rows[i:i + 1]})[0][0]
        paired = session.run(None, {"x": rows[i:i + 2]})[0][0]
        if not np.array_equal(alone, paired):
            return False
    return True

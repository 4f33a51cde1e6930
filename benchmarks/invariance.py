"""Which operators give a row a result that depends on the rest of its batch, on this CPU.

Each operator of the converted SmolLM2 graph runs alone, at SmolLM2-135M's widths, on random
inputs: a row's output alone (M = 1) and inside batches of 2, 3, 5, 8 and 16 rows, at every
position, compared bit for bit; GroupQueryAttention also over KV buffers and masks of other
widths. Then the engine end to end on a tiny model: batched against solo tokens with
``min_decode_rows`` 1 and 2. Prints one table with a digest of each output: run it natively
and under an emulated CPU to cover other instruction sets (onnxruntime picks its kernels by
CPUID at start-up), and compare the digests to see which results change from CPU to CPU:

    python benchmarks/invariance.py
    qemu-x86_64 -cpu Haswell .venv/bin/python benchmarks/invariance.py       # AVX2
    qemu-x86_64 -cpu SandyBridge .venv/bin/python benchmarks/invariance.py   # AVX, no AVX2
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from workbench._engine._cpu import cpu_info
from workbench._engine._rowprobe import op_session

HIDDEN, FFN, HEADS, KV_HEADS, HEAD_DIM, BLOCK = 576, 1536, 9, 3, 64, 32
BATCHES = (1, 2, 3, 5, 8, 16)
Run = Callable[[np.ndarray], np.ndarray]


def session(nodes: list, inputs: list, outputs: list, inits: list, threads: int
            ) -> ort.InferenceSession:
    return op_session(nodes, inputs, outputs, inits, threads)


def floats(name: str, dims: list) -> object:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:10]


def row_dependence(run: Run, rows: np.ndarray) -> tuple[str, str]:
    """Which batch sizes give row 0 (placed at every position) another result than M = 16,
    and a digest of the M = 16 output (compare it across CPUs)."""
    full = run(rows)
    reference = full[0]
    differs = set()
    for m in BATCHES:
        for position in range(m):
            batch = rows[1:m + 1].copy() if m > 1 else rows[:1].copy()
            batch[position] = rows[0]
            if not np.array_equal(run(batch)[position], reference):
                differs.add(m)
    verdict = "invariant" if not differs else "M=" + ",".join(map(str, sorted(differs))) + " differ"
    return verdict, digest(full)


def matmul_nbits(bits: int, level: int, threads: int, rng: np.random.Generator) -> Run:
    blocks = HIDDEN // BLOCK
    weights = rng.integers(0, 256, (FFN, blocks, BLOCK * bits // 8), dtype=np.uint8)
    scales = (rng.random(FFN * blocks, dtype=np.float32) * 0.01).astype(np.float32)
    zeros = (np.zeros(FFN * ((blocks + 1) // 2), np.uint8) if bits == 4
             else np.full((FFN, blocks), 128, np.uint8))
    node = helper.make_node("MatMulNBits", ["x", "w", "s", "z"], ["y"], domain="com.microsoft",
                            K=HIDDEN, N=FFN, bits=bits, block_size=BLOCK, accuracy_level=level)
    s = session([node], [floats("x", ["M", HIDDEN])], [floats("y", ["M", FFN])],
                [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(scales, "s"),
                 numpy_helper.from_array(zeros, "z")], threads)
    return lambda x: s.run(None, {"x": x})[0]


def simple_op(op: str, width: int, threads: int, rng: np.random.Generator, **attrs: object
              ) -> Run:
    inits, names = [], ["x"]
    if op == "SimplifiedLayerNormalization":
        inits.append(numpy_helper.from_array(rng.standard_normal(width).astype(np.float32), "g"))
        names.append("g")
    if op == "MatMul":
        inits.append(numpy_helper.from_array(
            rng.standard_normal((width, FFN)).astype(np.float32), "g"))
        names.append("g")
    out = FFN if op == "MatMul" else width
    s = session([helper.make_node(op, names, ["y"], **attrs)], [floats("x", ["M", width])],
                [floats("y", ["M", out])], inits, threads)
    return lambda x: s.run(None, {"x": x})[0]


def block_correction(threads: int, rng: np.random.Generator) -> Run:
    """The Q4_1 correction: block sums of x (Reshape + ReduceSum), then Gemm(sums, mins, y),
    with x and y taken from one input row [x | y]."""
    blocks = HIDDEN // BLOCK
    consts = {"mins": rng.standard_normal((blocks, FFN)).astype(np.float32),
              "shape": np.array([0, blocks, BLOCK], np.int64), "axes": np.array([-1], np.int64),
              "s0": np.array([0], np.int64), "s1": np.array([HIDDEN], np.int64),
              "s2": np.array([HIDDEN + FFN], np.int64), "ax1": np.array([1], np.int64)}
    nodes = [helper.make_node("Slice", ["xy", "s0", "s1", "ax1"], ["x"]),
             helper.make_node("Slice", ["xy", "s1", "s2", "ax1"], ["c"]),
             helper.make_node("Reshape", ["x", "shape"], ["blocked"]),
             helper.make_node("ReduceSum", ["blocked", "axes"], ["sums"], keepdims=0),
             helper.make_node("Gemm", ["sums", "mins", "c"], ["y"])]
    s = session(nodes, [floats("xy", ["M", HIDDEN + FFN])], [floats("y", ["M", FFN])],
                [numpy_helper.from_array(v, k) for k, v in consts.items()], threads)
    return lambda x: s.run(None, {"xy": x})[0]


def gqa(threads: int, rng: np.random.Generator) -> dict[str, tuple[str, str]]:
    """Decode one token for row 0 (8 cached tokens) alone in a buffer of 9, and inside
    batches whose buffers and masks are wider (other rows longer)."""
    q_width = (HEADS + 2 * KV_HEADS) * HEAD_DIM
    cos = rng.random((512, HEAD_DIM // 2), dtype=np.float32)
    sin = rng.random((512, HEAD_DIM // 2), dtype=np.float32)
    node = helper.make_node(
        "GroupQueryAttention", ["qkv", "", "", "pk", "pv", "seqlens", "total", "cos", "sin"],
        ["y", "ok", "ov"], domain="com.microsoft", num_heads=HEADS, kv_num_heads=KV_HEADS,
        do_rotary=1, rotary_interleaved=1)
    kv = ["B", KV_HEADS, "W", HEAD_DIM]
    ints = [helper.make_tensor_value_info("seqlens", TensorProto.INT32, ["B"]),
            helper.make_tensor_value_info("total", TensorProto.INT32, [])]
    s = session([node], [floats("qkv", ["B", 1, q_width]), floats("pk", kv), floats("pv", kv),
                         *ints], [floats("y", ["B", 1, HEADS * HEAD_DIM]), floats("ok", kv),
                                  floats("ov", kv)],
                [numpy_helper.from_array(cos, "cos"), numpy_helper.from_array(sin, "sin")],
                threads)
    qkv = rng.standard_normal((8, 1, q_width)).astype(np.float32)
    cache = rng.standard_normal((2, 8, KV_HEADS, 64, HEAD_DIM)).astype(np.float32)

    def row0(lengths: list[int], width: int) -> np.ndarray:
        b = len(lengths)
        pk = np.ascontiguousarray(cache[0, :b, :, :width])
        pv = np.ascontiguousarray(cache[1, :b, :, :width])
        total = np.array(max(lengths) + 1, np.int32)
        return s.run(["y"], {"qkv": qkv[:b], "pk": pk, "pv": pv,
                             "seqlens": np.array(lengths, np.int32), "total": total})[0][0]

    alone = row0([8], 9)
    cases = {"wider buffer (64)": ([8], 64), "batch of 2, other row longer": ([8, 30], 64),
             "batch of 8, mixed lengths": ([8, 3, 30, 12, 50, 8, 1, 20], 64)}
    return {name: ("invariant" if np.array_equal(row0(*case), alone) else "differs",
                   digest(alone)) for name, case in cases.items()}


def engine_check(min_rows: int, sets: int, exact: bool = False) -> tuple[str, str]:
    from workbench._engine._engine import Engine
    from workbench._engine._tiny import make_tiny_model
    from workbench._types import InferRequest

    with tempfile.TemporaryDirectory() as folder:
        files = make_tiny_model(Path(folder), exact=exact)
        rng = np.random.default_rng(0)
        differing = total = 0
        tokens = hashlib.sha256()
        with Engine(files, threads=2, max_batch=8, min_decode_rows=min_rows) as engine:
            for s in range(sets):
                requests = [InferRequest(agent=f"a{i}", index=s,
                                         prompt="the model " * int(rng.integers(1, 12)),
                                         max_tokens=int(rng.integers(4, 24)))
                            for i in range(int(rng.integers(2, 9)))]
                batched = engine.infer_batch(requests)
                for request, b in zip(requests, batched, strict=True):
                    total += 1
                    tokens.update(repr(b.tokens).encode())
                    differing += engine.infer_batch([request])[0].tokens != b.tokens
        verdict = f"{differing}/{total} sequences differ" if differing else f"0/{total} differ"
        return verdict, tokens.hexdigest()[:10]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sets", type=int, default=10, help="prompt sets for the engine check")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    info = cpu_info()
    print(f"cpu: {info['arch']}  kernel path: {info['isa']}  onnxruntime {ort.__version__}  "
          f"threads {args.threads}")
    rows = rng.standard_normal((17, FFN)).astype(np.float32)
    checks: list[tuple[str, tuple[str, str]]] = []
    for bits in (4, 8):
        for level in (0, 4):
            run = matmul_nbits(bits, level, args.threads, rng)
            checks.append((f"MatMulNBits {bits}-bit, accuracy_level {level}",
                           row_dependence(run, rows[:, :HIDDEN].copy())))
    checks.append(("MatMul fp32", row_dependence(
        simple_op("MatMul", HIDDEN, args.threads, rng), rows[:, :HIDDEN].copy())))
    checks.append(("SimplifiedLayerNormalization", row_dependence(
        simple_op("SimplifiedLayerNormalization", HIDDEN, args.threads, rng, axis=-1,
                  epsilon=1e-5, stash_type=1), rows[:, :HIDDEN].copy())))
    wide = rng.standard_normal((17, HIDDEN + FFN)).astype(np.float32)
    checks.append(("ReduceSum + Gemm (Q4_1 block-minimum correction)",
                   row_dependence(block_correction(args.threads, rng), wide)))
    checks.append(("Sigmoid", row_dependence(simple_op("Sigmoid", FFN, args.threads, rng), rows)))
    for case, verdict in gqa(args.threads, rng).items():
        checks.append((f"GroupQueryAttention, {case}", verdict))
    for min_rows in (1, 2):
        checks.append((f"engine, tiny model, min_decode_rows={min_rows}",
                       engine_check(min_rows, args.sets)))
    checks.append(("engine, tiny model, exact variant (fp32 activations), min_decode_rows=2",
                   engine_check(2, args.sets, exact=True)))
    width = max(len(name) for name, _ in checks)
    print(f"  {'operator':<{width}}  {'one row vs batch':<22}  output digest")
    for name, (verdict, output) in checks:
        print(f"  {name:<{width}}  {verdict:<22}  {output}")


if __name__ == "__main__":
    main()

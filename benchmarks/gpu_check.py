"""GPU check: does the engine run on CUDA, agree with the CPU, and how fast is it?

    python benchmarks/gpu_check.py [--tokens 32] [--folder DIR]

Run by ``benchmarks/gpu_check.sh`` on a machine with an NVIDIA GPU and onnxruntime-gpu
installed (``pip uninstall -y onnxruntime && pip install -e .[gpu]``); finishes in a few
minutes. Steps, each printed as it happens:

1. onnxruntime version, available providers, device; a CUDA session's ``get_providers()``.
2. A model with SmolLM2-135M's exact shapes (30 layers, hidden 576, 9/3 heads, FFN 1536,
   vocabulary 49152) and random weights, from the project's tiny-model generator.
3. CPU against CUDA on the exact variant (fp32 activations): greedy tokens for the same
   prompts, and teacher-forced logits within ``LOGIT_TOLERANCE``.
4. Decode tokens/s at batch 1 and 8 on both providers (fast variant).
5. A short table, last.

Where CUDA is not usable (no GPU, CPU-only onnxruntime, missing CUDA libraries) it says so
and still runs the CPU half, so the script itself can be checked anywhere. Exit status: 0 when
everything that could run agreed, 1 when CPU and CUDA disagree beyond tolerance.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from forcing import forced_logits  # benchmarks/forcing.py, beside this script

from workbench._engine._convert import convert_gguf
from workbench._engine._engine import Engine
from workbench._engine._model import ModelFiles
from workbench._engine._tiny import write_tiny_gguf
from workbench._types import InferRequest
from workbench.errors import ProviderError

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
SMOLLM2_SHAPES = {"layers": 30, "hidden": 576, "heads": 9, "kv_heads": 3, "intermediate": 1536,
                  "vocab": 49152}
LOGIT_TOLERANCE = 2e-2
"""Largest |CPU - CUDA| logit allowed (exact variant; logits of this model are O(10)).
CUDA sums in a different order (and may use TF32), so bit equality is not expected.
onnxruntime's CUDA GroupQueryAttention kernel is registered for float16/bfloat16, so with
these float32 graphs onnxruntime may place the attention nodes on the CPU provider inside the
CUDA session (the engine keeps the KV cache in host memory anyway); the check measures what
that costs."""
PROMPTS = ("hello world, the agent and the model", "what is the step token",
           "yes no ok the world is", "in it that what you")


def say(text: str) -> None:
    print(text, flush=True)


def environment() -> None:
    say(f"onnxruntime {ort.__version__}")
    say(f"available providers: {ort.get_available_providers()}")
    say(f"device: {ort.get_device()}")


def build_models(folder: Path) -> dict[str, ModelFiles]:
    """The full-size random model in both variants (end of sequence disabled)."""
    started = time.perf_counter()
    shapes = SMOLLM2_SHAPES
    gguf = write_tiny_gguf(folder / "smollm2-shapes.gguf", layers=shapes["layers"],
                           hidden=shapes["hidden"], heads=shapes["heads"],
                           kv_heads=shapes["kv_heads"], intermediate=shapes["intermediate"],
                           vocab=shapes["vocab"], context=1024, seed=0)
    models = {}
    for variant in ("q4-fp32act", "q4-int8act"):
        files = convert_gguf(gguf, folder / variant, variant=variant,
                             model_id="random-smollm2-shapes")
        config = dataclasses.replace(files.config, eos_token_ids=())
        models[variant] = dataclasses.replace(files, config=config)
    say(f"built random SmolLM2-shaped model in {time.perf_counter() - started:.1f} s")
    return models


def raw_cuda_session(files: ModelFiles) -> None:
    """A plain onnxruntime session asked for CUDA: which providers does it really run?"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "provider not in available providers"
        try:
            session = ort.InferenceSession(str(files.onnx_path), providers=[CUDA, CPU])
        except Exception as exc:  # onnxruntime raises several unrelated types here
            say(f"plain CUDA session failed: {type(exc).__name__}: {exc}")
            return
    say(f"plain session asked for [CUDA, CPU] runs on: {session.get_providers()}")


def open_cuda(files: ModelFiles) -> Engine | None:
    """A strict CUDA engine, or None (and the reason printed) where CUDA is not usable."""
    try:
        engine = Engine(files, providers=[CUDA], strict_provider=True, threads=2)
    except ProviderError as exc:
        say(f"CUDA: not usable: {exc.reason}")
        return None
    providers = engine._session.session.get_providers()
    say(f"CUDA session providers: {providers}")
    return engine


def requests(tokens: int, count: int = len(PROMPTS)) -> list[InferRequest]:
    return [InferRequest(agent=f"a{i}", index=0, prompt=PROMPTS[i % len(PROMPTS)],
                         max_tokens=tokens) for i in range(count)]


def compare(cpu: Engine, cuda: Engine, tokens: int) -> dict[str, Any]:
    """Greedy tokens and teacher-forced logits, CPU against CUDA."""
    batch = requests(tokens)
    on_cpu, on_cuda = cpu.infer_batch(batch), cuda.infer_batch(batch)
    same = sum(a.tokens == b.tokens for a, b in zip(on_cpu, on_cuda, strict=True))
    worst = 0.0
    for request, result in zip(batch, on_cpu, strict=True):
        a = forced_logits(cpu, request, result.tokens)
        b = forced_logits(cuda, request, result.tokens)
        worst = max(worst, float(np.abs(a - b).max()))
    say(f"CPU vs CUDA: {same}/{len(batch)} prompts with identical greedy tokens; "
        f"max |logit difference| {worst:.2e} (tolerance {LOGIT_TOLERANCE})")
    return {"same": same, "prompts": len(batch), "max_diff": worst}


def decode_speed(engine: Engine, batch: int, tokens: int) -> float:
    """Decode tokens/s for ``batch`` streams of ``tokens`` tokens (after one warm-up)."""
    engine.infer_batch(requests(4, batch))
    engine.infer_batch(requests(tokens, batch))
    stats = engine.last_stats
    return stats.decode_tokens / stats.decode_s if stats.decode_s else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--folder", type=Path, default=None)
    opts = parser.parse_args()
    environment()
    folder = opts.folder or Path(tempfile.mkdtemp(prefix="wb-gpu-check-"))
    models = build_models(folder)
    exact, fast = models["q4-fp32act"], models["q4-int8act"]
    raw_cuda_session(fast)
    rows: list[tuple[str, str, str]] = []
    agreement: dict[str, Any] | None = None
    with Engine(exact, providers=[CPU], threads=2) as cpu_exact:
        cuda_exact = open_cuda(exact)
        if cuda_exact is not None:
            with cuda_exact:
                try:
                    agreement = compare(cpu_exact, cuda_exact, min(opts.tokens, 16))
                except ProviderError as exc:
                    say(f"CUDA failed at run time: {exc.reason}")
                    agreement = {"same": 0, "prompts": len(PROMPTS), "max_diff": float("inf")}
    for provider in (CPU, CUDA):
        engine = Engine(fast, providers=[CPU], threads=2) if provider == CPU else open_cuda(fast)
        if engine is None:
            rows.append((provider, "n/a", "n/a"))
            continue
        with engine:
            try:
                one = decode_speed(engine, 1, opts.tokens)
                eight = decode_speed(engine, 8, opts.tokens)
            except ProviderError as exc:
                say(f"{provider} failed at run time: {exc.reason}")
                rows.append((provider, "failed", "failed"))
                continue
        rows.append((provider, f"{one:.1f}", f"{eight:.1f}"))
    print_table(rows, agreement)
    if agreement is None:
        return 0
    return 0 if agreement["max_diff"] <= LOGIT_TOLERANCE else 1


def print_table(rows: list[tuple[str, str, str]], agreement: dict[str, Any] | None) -> None:
    say("")
    say(f"| provider | decode tok/s, batch 1 | decode tok/s, batch 8 |   (onnxruntime "
        f"{ort.__version__}, {ort.get_device()})")
    say("|---|---|---|")
    for provider, one, eight in rows:
        say(f"| {provider} | {one} | {eight} |")
    if agreement is None:
        say("CPU vs CUDA: not compared (CUDA not usable here)")
    else:
        verdict = "OK" if agreement["max_diff"] <= LOGIT_TOLERANCE else "MISMATCH"
        say(f"CPU vs CUDA: {verdict}: tokens identical for {agreement['same']}/"
            f"{agreement['prompts']} prompts, max |logit diff| {agreement['max_diff']:.2e}")


if __name__ == "__main__":
    sys.exit(main())

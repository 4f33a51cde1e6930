"""Engine benchmark: this engine against llama.cpp on the same GGUF, side by side.

    python benchmarks/engine.py [--reps 3] [--threads 2] [--markdown]

Measures, for SmolLM2-135M-Instruct, a 41-token chat prompt and 128 greedy tokens (end of
sequence ignored): load time, prefill and decode tokens/s, peak RSS, batched decode
throughput at B=8 against a single stream, and accuracy against the exact fp32 reference
(``workbench._engine._reference``): top-1 agreement and mean KL(reference || engine) over
the 128 teacher-forced positions of one continuation, for this engine and for llama.cpp.

Each repetition runs each engine in a fresh subprocess (so load time and peak RSS are real),
alternating between them so machine load affects both alike; the table shows medians.

llama-cpp-python has no binary wheel here, so it is built once (about 11 minutes on two cores,
CPU only) into a wheel cache outside the repository and installed into a separate virtual
environment: it is a benchmark dependency, not a runtime one. ``--llama-python PATH`` uses an
existing interpreter that has ``llama_cpp`` instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

LLAMA_CPP_VERSION = "0.3.36"
PROMPT = "Write a short poem about the sea and the wind."  # 41 tokens with SmolLM2's template
NEW_TOKENS = 128
BATCH = 8
CACHE = Path(os.environ.get("WORKBENCH_BENCH_CACHE", Path.home() / ".cache" / "workbench-bench"))


# --- llama.cpp side (runs in the separate environment: numpy and llama_cpp only) -------------

def llama_part(gguf: str, ids: list[int], forced: list[int], threads: int,
               out: str) -> dict[str, Any]:
    """Load, prefill and greedy decode with llama.cpp; teacher-forced logits into ``out``."""
    import numpy as np
    from llama_cpp import Llama  # type: ignore[import-not-found]

    started = time.perf_counter()
    llm = Llama(model_path=gguf, n_ctx=512, n_threads=threads, n_threads_batch=threads,
                n_batch=512, verbose=False)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    llm.eval(ids)
    prefill_s = time.perf_counter() - started
    tokens, times = [], []
    for token in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, reset=True):
        tokens.append(int(token))
        times.append(time.perf_counter())
        if len(tokens) == NEW_TOKENS:
            break
    decode_tps = (NEW_TOKENS - 1) / (times[-1] - times[0])
    rss = _peak_rss_mb()
    del llm
    if forced:
        scorer = Llama(model_path=gguf, n_ctx=512, n_threads=threads, n_threads_batch=threads,
                       logits_all=True, verbose=False)
        scorer.eval(ids)
        rows = [np.array(scorer.scores[scorer.n_tokens - 1])]
        for token in forced[:-1]:  # one token at a time: the decode path
            scorer.eval([token])
            rows.append(np.array(scorer.scores[scorer.n_tokens - 1]))
        np.save(out, np.stack(rows).astype(np.float32))
    return {"load_s": load_s, "prefill_tps": len(ids) / prefill_s, "decode_tps": decode_tps,
            "tokens": tokens, "rss_mb": rss}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --- this engine's side (the project's environment) --------------------------------------------

def _no_eos(files: Any) -> Any:
    """The same model with no end-of-sequence token, so every run makes NEW_TOKENS tokens."""
    return dataclasses.replace(files, config=dataclasses.replace(files.config, eos_token_ids=()))


def _chat_request(agent: str, max_tokens: int) -> Any:
    from workbench._types import InferRequest

    return InferRequest(agent=agent, index=0, max_tokens=max_tokens,
                        messages=({"role": "user", "content": PROMPT},))


def onnx_part(variant: str, threads: int, forced: list[int], out: str) -> dict[str, Any]:
    """Load, prefill, decode (1 and BATCH streams), teacher-forced logits into ``out``."""
    from workbench._engine._engine import Engine
    from workbench._engine._store import resolve_model

    files = _no_eos(resolve_model("smollm2-135m-instruct", variant=variant, progress=False))
    started = time.perf_counter()
    engine = Engine(files, threads=threads, max_batch=BATCH)
    load_s = time.perf_counter() - started
    single = engine.infer_batch([_chat_request("solo", NEW_TOKENS)])[0]
    one = engine.last_stats
    engine.infer_batch([_chat_request(f"a{i}", NEW_TOKENS) for i in range(BATCH)])
    many = engine.last_stats
    result = {"load_s": load_s, "prefill_tps": one.prefill_tokens / one.prefill_s,
              "decode_tps": one.decode_tokens / one.decode_s,
              "batch_decode_tps": many.decode_tokens / many.decode_s,
              "tokens": list(single.tokens), "rss_mb": _peak_rss_mb(),
              "prompt_tokens": single.prompt_tokens}
    if forced:
        import numpy as np
        from forcing import forced_logits  # benchmarks/forcing.py, beside this script

        np.save(out, forced_logits(engine, _chat_request("forced", 0), tuple(forced)))
    engine.close()
    return result


def prompt_ids() -> list[int]:
    from workbench._engine._engine import Engine

    with Engine(threads=1) as engine:
        return engine._encode(_chat_request("p", 1))


def reference_accuracy(ids: list[int], forced: list[int], logits: dict[str, Any]
                       ) -> dict[str, dict[str, float]]:
    """Top-1 agreement and mean KL(reference || engine) against the fp32 reference."""
    import numpy as np

    from workbench._engine._gguf import read_gguf
    from workbench._engine._reference import reference_logits
    from workbench._engine._store import fetch_known

    parsed = read_gguf(fetch_known("smollm2-135m-instruct", _cache_root(), progress=False))
    ref = reference_logits(parsed.config, parsed.weights, ids + forced[:-1])[len(ids) - 1:]
    out = {}
    for name, got in logits.items():
        p = _log_softmax(ref.astype(np.float64))
        q = _log_softmax(got.astype(np.float64))
        kl = float(np.mean(np.sum(np.exp(p) * (p - q), axis=-1)))
        top1 = float(np.mean(np.argmax(ref, -1) == np.argmax(got, -1)))
        out[name] = {"top1": top1, "kl": kl}
    return out


def _log_softmax(x: Any) -> Any:
    import numpy as np

    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _cache_root() -> Path:
    from workbench._engine._store import cache_root

    return cache_root()


def reference_continuation(ids: list[int]) -> list[int]:
    """The exact variant's greedy continuation (agrees with the fp32 reference to ~1e-4)."""
    from workbench._engine._engine import Engine
    from workbench._engine._store import resolve_model

    files = _no_eos(resolve_model("smollm2-135m-instruct", variant="q4-fp32act",
                                  progress=False))
    with Engine(files, threads=2) as engine:
        return list(engine.infer_batch([_chat_request("ref", NEW_TOKENS)])[0].tokens)


# --- driver --------------------------------------------------------------------------------

LLAMA_CMAKE_ARGS = (
    # x86-64 with AVX-512 but without AMX: llama.cpp's AMX kernels crash (SIGSEGV in
    # ggml_backend_amx_mul_mat) on this model in virtual machines that list AMX.
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON "
    "-DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON "
    "-DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF "
    "-DGGML_CUDA=OFF -DGGML_BLAS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "
    "-DLLAMA_CURL=OFF")


def llama_python(explicit: str | None) -> str:
    """An interpreter with llama_cpp: built once into the cache, in its own environment."""
    if explicit:
        return explicit
    env = CACHE / "llama-venv-noamx"
    python = env / "bin" / "python"
    if python.exists() and _has_llama(python):
        return str(python)
    wheels = CACHE / "wheels-noamx"
    wheels.mkdir(parents=True, exist_ok=True)
    pattern = f"llama_cpp_python-{LLAMA_CPP_VERSION}-*.whl"
    if not list(wheels.glob(pattern)):
        print(f"building llama-cpp-python {LLAMA_CPP_VERSION} once (about 11 minutes)...",
              file=sys.stderr)
        subprocess.run(["nice", "-n", "19", sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "-w", str(wheels), f"llama-cpp-python=={LLAMA_CPP_VERSION}"],
                       env={**os.environ, "CMAKE_ARGS": LLAMA_CMAKE_ARGS}, check=True)
    venv.create(env, with_pip=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy",
                    *map(str, wheels.glob(pattern))], check=True)
    return str(python)


def _has_llama(python: Path) -> bool:
    return subprocess.run([str(python), "-c", "import llama_cpp"], capture_output=True,
                          check=False).returncode == 0


def _child(python: str, part: str, args: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([python, __file__, "--part", part, "--args", json.dumps(args)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{part} part failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", default="q4-int8act")
    parser.add_argument("--llama-python", default=None)
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--part", choices=["onnx", "llama"], help=argparse.SUPPRESS)
    parser.add_argument("--args", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.part:
        a = json.loads(opts.args)
        fn = onnx_part if opts.part == "onnx" else llama_part
        print(json.dumps(fn(**a)))
        return
    run(opts)


def run(opts: argparse.Namespace) -> None:
    from workbench._engine._store import fetch_known

    llama_py = llama_python(opts.llama_python)
    gguf = str(fetch_known("smollm2-135m-instruct", _cache_root(), progress=False))
    ids = prompt_ids()
    forced = [] if opts.no_accuracy else reference_continuation(ids)
    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-"))
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for rep in range(opts.reps):
        want = forced if rep == 0 else []
        ours.append(_child(sys.executable, "onnx", {
            "variant": opts.variant, "threads": opts.threads, "forced": want,
            "out": str(tmp / "onnx.npy")}))
        theirs.append(_child(llama_py, "llama", {
            "gguf": gguf, "ids": ids, "forced": want, "threads": opts.threads,
            "out": str(tmp / "llama.npy")}))
        print(f"rep {rep + 1}/{opts.reps}: decode {ours[-1]['decode_tps']:.1f} vs "
              f"{theirs[-1]['decode_tps']:.1f} tok/s", file=sys.stderr)
    accuracy = {}
    if forced:
        import numpy as np

        accuracy = reference_accuracy(ids, forced, {"onnx": np.load(tmp / "onnx.npy"),
                                                    "llama": np.load(tmp / "llama.npy")})
    print(table(opts, ids, ours, theirs, accuracy))


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def table(opts: argparse.Namespace, ids: list[int], ours: list[dict[str, Any]],
          theirs: list[dict[str, Any]], accuracy: dict[str, dict[str, float]]) -> str:
    """The results as a Markdown table (medians over the repetitions)."""
    import onnxruntime

    def row(name: str, key: str, fmt: str, ratio: bool = True) -> str:
        a, b = _median(ours, key), _median(theirs, key)
        r = f"{a / b:.2f}x" if ratio and b else ""
        return f"| {name} | {a:{fmt}} | {b:{fmt}} | {r} |"

    single, batched = _median(ours, "decode_tps"), _median(ours, "batch_decode_tps")
    lines = [
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{_cpu_name()}; threads={opts.threads}; onnxruntime {onnxruntime.__version__}; "
        f"llama-cpp-python {LLAMA_CPP_VERSION}; variant {opts.variant}; medians of "
        f"{opts.reps} runs",
        f"prompt: {len(ids)} tokens (chat), {NEW_TOKENS} greedy tokens, end of sequence ignored",
        "",
        "| measure | workbench (ONNX) | llama.cpp | ratio |",
        "|---|---|---|---|",
        row("load time (s)", "load_s", ".3f", ratio=False),
        row("prefill (tok/s)", "prefill_tps", ".1f"),
        row("decode, 1 stream (tok/s)", "decode_tps", ".1f"),
        row("peak RSS (MB)", "rss_mb", ".0f", ratio=False),
        f"| decode, {BATCH} streams batched (tok/s) | {batched:.1f} | n/a | "
        f"{batched / single:.2f}x single |",
    ]
    for name, label in (("onnx", "workbench"), ("llama", "llama.cpp")):
        if name in accuracy:
            acc = accuracy[name]
            lines.append(f"| top-1 vs fp32 reference, {label} | {acc['top1'] * 100:.1f}% | "
                         f"KL {acc['kl']:.4f} | |")
    same = sum(a == b for a, b in zip(ours[0]["tokens"], theirs[0]["tokens"], strict=False))
    lines.append(f"| greedy tokens equal to llama.cpp's | {same}/{NEW_TOKENS} | | |")
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()

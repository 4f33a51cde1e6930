"""Engine benchmark: this engine against llama.cpp on the same GGUF, side by side.

    python benchmarks/engine.py [--reps 3] [--threads 2] [--min-decode-rows N [N ...]]

Measures, for SmolLM2-135M-Instruct, a 41-token chat prompt and 128 greedy tokens (end of
sequence ignored): load time, prefill and decode tokens/s, peak RSS, batched decode
throughput at B=8 against a single stream, and accuracy against the exact fp32 reference
(``workbench._engine._reference``): top-1 agreement and mean KL(reference || engine) over
the 128 teacher-forced positions of one continuation, for this engine and for llama.cpp.

Each repetition runs each engine in a fresh subprocess (so load time and peak RSS are real),
alternating between them so machine load affects both alike; the table shows medians.

Figures depend on the CPU, so the output starts with the CPU model and its instruction sets,
the llama.cpp build flags and the CPU features llama.cpp reports at run time, and the table is
headed by the CPU it was measured on (docs keep one table per CPU).

llama-cpp-python has no binary wheel here, so it is built from source once per (version,
CMake flags) (about 11 minutes on two cores, CPU only), with flags chosen from this CPU's
features, into a cache outside the repository, and installed into a separate virtual
environment: a benchmark dependency, not a runtime one (see ``llama_build.py``). The run stops
if llama.cpp does not report the features it was built with. ``--llama-python PATH`` uses an
existing interpreter that has ``llama_cpp`` instead (its flags are then unknown; its reported
features are still printed).

Both engines spin-wait for work, but llama.cpp's OpenMP threads lose far more when other
processes take CPUs from them; the table gives the load average and flags a busy run. OpenMP
settings in the environment (``OMP_WAIT_POLICY=passive``) reach llama.cpp only, and are shown.

``--min-decode-rows N`` measures the engine with decode steps padded to at least N rows
(the engine's batch-invariance setting); several values are measured side by side, in
alternating processes, the first one in the main columns.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import llama_build  # benchmarks/llama_build.py, beside this script (standard library only)

PROMPT = "Write a short poem about the sea and the wind."  # 41 tokens with SmolLM2's template
NEW_TOKENS = 128
BATCH = 8
# OpenMP settings the llama.cpp side inherits from the environment (onnxruntime's own thread
# pool ignores them); shown with the results when set, e.g. OMP_WAIT_POLICY=passive.
OMP_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_PROC_BIND")


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
            "tokens": tokens, "rss_mb": rss, "system_info": llama_build.system_info()}


def llama_info() -> dict[str, Any]:
    """The llama.cpp this interpreter has: its version and the CPU features it reports."""
    import llama_cpp

    return {"version": llama_cpp.__version__, "system_info": llama_build.system_info()}


def _peak_rss_mb() -> float:
    """This process's peak resident memory since it started. ``ru_maxrss`` is not that on
    Linux: a child keeps the high-water mark of the parent it was forked from (here the
    driver, which has loaded the model and the reference), so both engines showed the
    driver's peak. ``VmHWM`` belongs to the process's own memory map."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --- this engine's side (the project's environment) --------------------------------------------

def _no_eos(files: Any) -> Any:
    """The same model with no end-of-sequence token, so every run makes NEW_TOKENS tokens."""
    return dataclasses.replace(files, config=dataclasses.replace(files.config, eos_token_ids=()))


def _chat_request(agent: str, max_tokens: int) -> Any:
    from workbench._types import InferRequest

    return InferRequest(agent=agent, index=0, max_tokens=max_tokens,
                        messages=({"role": "user", "content": PROMPT},))


def engine_options(threads: int, min_decode_rows: int | None) -> dict[str, Any]:
    """The ``Engine`` settings measured: the one place the benchmark passes engine options.
    ``min_decode_rows`` None leaves the engine's default."""
    options: dict[str, Any] = {"threads": threads, "max_batch": BATCH}
    if min_decode_rows is not None:
        options["min_decode_rows"] = min_decode_rows  # Engine(min_decode_rows=N)
    return options


def check_engine_options(options: dict[str, Any]) -> None:
    """Stop early, with a clear message, if this engine lacks an option the run asks for."""
    from workbench._engine._engine import Engine

    known = inspect.signature(Engine).parameters
    missing = [name for name in options if name not in known]
    if missing:
        raise SystemExit(f"this engine has no {', '.join(missing)} option (Engine(...) "
                         f"takes {', '.join(known)})")


def onnx_part(variant: str, threads: int, forced: list[int], out: str,
              min_decode_rows: int | None = None) -> dict[str, Any]:
    """Load, prefill, decode (1 and BATCH streams), teacher-forced logits into ``out``."""
    from workbench._engine._engine import Engine
    from workbench._engine._store import resolve_model

    files = _no_eos(resolve_model("smollm2-135m-instruct", variant=variant, progress=False))
    started = time.perf_counter()
    engine = Engine(files, **engine_options(threads, min_decode_rows))
    load_s = time.perf_counter() - started
    single = engine.infer_batch([_chat_request("solo", NEW_TOKENS)])[0]
    one = engine.last_stats
    engine.infer_batch([_chat_request(f"a{i}", NEW_TOKENS) for i in range(BATCH)])
    many = engine.last_stats
    result = {"load_s": load_s, "prefill_tps": one.prefill_tokens / one.prefill_s,
              "decode_tps": one.decode_tokens / one.decode_s,
              "batch_decode_tps": many.decode_tokens / many.decode_s,
              "tokens": list(single.tokens), "rss_mb": _peak_rss_mb(),
              "prompt_tokens": single.prompt_tokens,
              "min_decode_rows": engine.describe().get("min_decode_rows")}
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

@dataclasses.dataclass(frozen=True)
class LlamaBuild:
    """The llama.cpp the run measures: interpreter, CMake flags (None if not built here),
    version and the CPU features it reports at run time."""

    python: str
    cmake_args: str | None
    version: str
    system_info: str


def llama_build_for_run(explicit: str | None) -> LlamaBuild:
    """Build (once per version and flags) or take the given llama.cpp, and check that it
    reports the CPU features it was built with."""
    if explicit:
        python, args, options = explicit, None, {}
    else:
        options = llama_build.ggml_options()
        args = llama_build.cmake_args(options)
        python = llama_build.llama_python(args)
    info = _child(python, "info", {})
    problems = llama_build.check_build(options, info["system_info"])
    if problems:
        raise SystemExit("the llama.cpp build is not the one asked for (a stale wheel?):\n  "
                         + "\n  ".join(problems) + f"\n  CMAKE_ARGS={args}\n  reported: "
                         + info["system_info"] + f"\n  remove {llama_build.build_dir(args or '')}"
                         " to rebuild")
    return LlamaBuild(python, args, info["version"], info["system_info"])


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
    parser.add_argument("--min-decode-rows", type=int, nargs="+", default=[None], metavar="N",
                        help="pad the engine's decode steps to at least N rows (default: the "
                        "engine's default); several values are measured side by side")
    parser.add_argument("--llama-python", default=None,
                        help="an interpreter with llama_cpp, instead of building one")
    parser.add_argument("--llama-info", action="store_true",
                        help="build or check llama.cpp, print the CPU and build lines, and stop")
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--part", choices=["onnx", "llama", "info"], help=argparse.SUPPRESS)
    parser.add_argument("--args", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.part:
        a = json.loads(opts.args)
        fn = {"onnx": onnx_part, "llama": llama_part, "info": llama_info}[opts.part]
        print(json.dumps(fn(**a)))
        return
    run(opts)


def header(build: LlamaBuild) -> str:
    """The CPU and llama.cpp build lines that head the output."""
    flags = build.cmake_args if build.cmake_args is not None else "unknown (--llama-python)"
    return "\n".join([
        llama_build.cpu_line(),
        f"llama.cpp: llama-cpp-python {build.version}; build flags: {flags}"
        + "".join(f"; {k}={os.environ[k]}" for k in OMP_SETTINGS if k in os.environ),
        f"llama.cpp reports: {build.system_info}",
    ])


def run(opts: argparse.Namespace) -> None:
    from workbench._engine._store import fetch_known

    for rows in opts.min_decode_rows:
        check_engine_options(engine_options(opts.threads, rows))
    build = llama_build_for_run(opts.llama_python)
    print(header(build), flush=True)
    if opts.llama_info:
        return
    gguf = str(fetch_known("smollm2-135m-instruct", _cache_root(), progress=False))
    ids = prompt_ids()
    forced = [] if opts.no_accuracy else reference_continuation(ids)
    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-"))
    load = [os.getloadavg()[0]]
    ours: list[list[dict[str, Any]]] = [[] for _ in opts.min_decode_rows]
    theirs: list[dict[str, Any]] = []
    for rep in range(opts.reps):
        for k, rows in enumerate(opts.min_decode_rows):
            want = forced if rep == 0 and k == 0 else []
            ours[k].append(_child(sys.executable, "onnx", {
                "variant": opts.variant, "threads": opts.threads, "forced": want,
                "out": str(tmp / "onnx.npy"), "min_decode_rows": rows}))
        theirs.append(_child(build.python, "llama", {
            "gguf": gguf, "ids": ids, "forced": forced if rep == 0 else [],
            "threads": opts.threads, "out": str(tmp / "llama.npy")}))
        if theirs[-1]["system_info"] != build.system_info:
            raise SystemExit(f"llama.cpp reported other features while measuring: "
                             f"{theirs[-1]['system_info']}")
        decode = " / ".join(f"{r[-1]['decode_tps']:.1f}" for r in ours)
        print(f"rep {rep + 1}/{opts.reps}: decode {decode} vs "
              f"{theirs[-1]['decode_tps']:.1f} tok/s", file=sys.stderr)
    load.append(os.getloadavg()[0])
    accuracy = {}
    if forced:
        import numpy as np

        accuracy = reference_accuracy(ids, forced, {"onnx": np.load(tmp / "onnx.npy"),
                                                    "llama": np.load(tmp / "llama.npy")})
    print()
    print(table(opts, build, ids, ours, theirs, accuracy, load))


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def _rows_label(runs: list[dict[str, Any]], asked: int | None) -> str:
    used = runs[0].get("min_decode_rows")
    default = " (engine default)" if asked is None else ""
    return f"min_decode_rows {used if used is not None else 'n/a'}{default}"


def _busy_note(load: list[float]) -> str:
    """A warning when other work competed for the CPUs: llama.cpp's OpenMP threads spin-wait
    at each barrier and lose far more than onnxruntime's pool when a CPU is taken from them
    (measured: decode from ~58 down to 1-20 tok/s at a load of 4.5 on 2 CPUs; 58 with
    OMP_WAIT_POLICY=passive), so the ratios of a busy run say little."""
    if max(load) <= (os.cpu_count() or 1) + 0.5:
        return ""
    if os.environ.get("OMP_WAIT_POLICY", "").lower() == "passive":
        return "; BUSY: other work competed for the CPUs: rerun on a quiet machine before quoting"
    return ("; BUSY: other work competed for the CPUs, and llama.cpp's OpenMP threads "
            "(spin-waiting) suffer far more than the engine: rerun on a quiet machine, or "
            "with OMP_WAIT_POLICY=passive, before quoting")


def table(opts: argparse.Namespace, build: LlamaBuild, ids: list[int],
          ours_by_rows: list[list[dict[str, Any]]], theirs: list[dict[str, Any]],
          accuracy: dict[str, dict[str, float]], load: list[float]) -> str:
    """The results as Markdown, headed by the CPU they were measured on (medians over the
    repetitions). The main columns are the first ``--min-decode-rows`` value."""
    import onnxruntime

    ours = ours_by_rows[0]

    def row(name: str, key: str, fmt: str, ratio: bool = True) -> str:
        a, b = _median(ours, key), _median(theirs, key)
        r = f"{a / b:.2f}x" if ratio and b else ""
        return f"| {name} | {a:{fmt}} | {b:{fmt}} | {r} |"

    single, batched = _median(ours, "decode_tps"), _median(ours, "batch_decode_tps")
    lines = [
        f"### {llama_build.cpu_name()} ({llama_build.cpu_tag()}), {os.cpu_count()} CPUs",
        "",
        llama_build.cpu_line(),
        f"llama.cpp: llama-cpp-python {build.version}, build flags "
        f"{build.cmake_args if build.cmake_args is not None else 'unknown (--llama-python)'}"
        + "".join(f"; {k}={os.environ[k]}" for k in OMP_SETTINGS if k in os.environ),
        f"llama.cpp reports: {build.system_info}",
        f"workbench: onnxruntime {onnxruntime.__version__}; variant {opts.variant}; "
        f"{_rows_label(ours, opts.min_decode_rows[0])}; threads={opts.threads}; medians of "
        f"{opts.reps} runs",
        f"prompt: {len(ids)} tokens (chat), {NEW_TOKENS} greedy tokens, end of sequence ignored",
        f"load average (1 min) before/after the runs: {load[0]:.1f}/{load[-1]:.1f} on "
        f"{os.cpu_count()} CPUs{_busy_note(load)}",
        "",
        f"| measure ({llama_build.cpu_tag()}) | workbench (ONNX) | llama.cpp | ratio |",
        "|---|---|---|---|",
        row("load time (s)", "load_s", ".3f", ratio=False),
        row("prefill (tok/s)", "prefill_tps", ".1f"),
        row("decode, 1 stream (tok/s)", "decode_tps", ".1f"),
        row("peak RSS (MB)", "rss_mb", ".0f", ratio=False),
        f"| decode, {BATCH} streams batched (tok/s) | {batched:.1f} | n/a | "
        f"{batched / single:.2f}x single |",
    ]
    for runs, asked in zip(ours_by_rows[1:], opts.min_decode_rows[1:], strict=True):
        label = _rows_label(runs, asked)
        one, many = _median(runs, "decode_tps"), _median(runs, "batch_decode_tps")
        llama = _median(theirs, "decode_tps")
        lines += [f"| decode, 1 stream, {label} (tok/s) | {one:.1f} | {llama:.1f} | "
                  f"{one / llama:.2f}x ({one / single:.2f}x of the first) |",
                  f"| decode, {BATCH} streams batched, {label} (tok/s) | {many:.1f} | n/a | "
                  f"{many / one:.2f}x single ({many / batched:.2f}x of the first) |"]
    for name, label in (("onnx", "workbench"), ("llama", "llama.cpp")):
        if name in accuracy:
            acc = accuracy[name]
            lines.append(f"| top-1 vs fp32 reference, {label} | {acc['top1'] * 100:.1f}% | "
                         f"KL {acc['kl']:.4f} | |")
    same = sum(a == b for a, b in zip(ours[0]["tokens"], theirs[0]["tokens"], strict=False))
    lines.append(f"| greedy tokens equal to llama.cpp's | {same}/{NEW_TOKENS} | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

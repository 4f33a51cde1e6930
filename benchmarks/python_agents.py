"""Sandboxed Python agents (``run.add_agent(..., sandbox=True)``) beside the C agent and the
in-process Python agent.

Measures, on this machine:
- cold start on an empty cache: building the runtime component with componentize-py,
  compiling it for wasmtime, and the first step of the first agent;
- cached start: a fresh interpreter (workbench already imported) to the first committed step
  of one sandboxed agent, in-process (``workers=0``) and in a new worker pool of one worker;
- step latency: median seconds per step of one agent;
- agent-steps per second for 1, 16 and 256 agents stepping together (policy "parallel",
  one pool sized to the CPU count);
- memory: the workers' peak resident memory while 256 sandboxed agents step together, per
  agent, and how many such agents fit in 24 GiB.

The agents are the same counter three ways: ``examples/agents/counter.c`` (built with
clang for wasm32-wasi), and :func:`counter` below in-process and sandboxed.

    python benchmarks/python_agents.py [--steps N] [--agents 1,16,256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import workbench as wb
from workbench._pysandbox._runtime import runtime_path
from workbench._wasm._build import build_agent
from workbench._wasm._pool import WorkerPool

ROOT = Path(__file__).resolve().parents[1]
CAPS = ["random", "now"]
BIG = 10**9


def counter(state: Any, inbox: list[Any], host: Any) -> dict[str, Any]:
    """examples/agents/counter.c in Python: count steps, echo messages with a nonce."""
    count = state.get("count", 0) + 1
    limit = state.get("limit", 3)
    outbox = [(m["from"], {"echo": m["payload"], "count": count,
                           "nonce": str(host.random()), "at": host.now()}) for m in inbox]
    return {"state": {"count": count, "limit": limit}, "outbox": outbox,
            "status": "done" if count >= limit else "ready"}


def peak_rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) * 1024
    return total


def cold_start(tmp: Path) -> tuple[float, float]:
    """(seconds to build and compile the runtime into an empty cache, then to the first
    committed step), in a child interpreter so nothing is loaded before."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); t0 = time.perf_counter(); "
            "from workbench._pysandbox._runtime import runtime_path; "
            "runtime_path(progress=False); t1 = time.perf_counter(); "
            "import workbench as wb; from benchmarks.python_agents import counter; "
            "run = wb.Run(seed=1, workers=0, journal=sys.argv[2]); "
            "run.add_agent('a', counter, sandbox=True, state={}, capabilities=[]); "
            "run.step(); print(t1 - t0, time.perf_counter() - t0)")
    env = dict(os.environ, WORKBENCH_CACHE=str(tmp / "cold-cache"))
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), str(tmp / "cold.wbj")],
                         env=env, capture_output=True, text=True, check=True, cwd=tmp)
    build, first = map(float, out.stdout.split())
    return build, first


def cached_start(tmp: Path, workers: int, samples: int) -> float:
    """Median seconds from a fresh interpreter (workbench imported) to the first step."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); import workbench as wb; "
            "from benchmarks.python_agents import counter; t0 = time.perf_counter(); "
            f"run = wb.Run(seed=1, workers={workers}, journal=sys.argv[2]); "
            "run.add_agent('a', counter, sandbox=True, state={}, capabilities=[]); "
            "run.step(); print(time.perf_counter() - t0); run.close()")
    times = []
    for i in range(samples):
        out = subprocess.run([sys.executable, "-c", code, str(ROOT),
                              str(tmp / f"cached{workers}-{i}.wbj")],
                             capture_output=True, text=True, check=True, cwd=tmp)
        times.append(float(out.stdout))
    return statistics.median(times)


def step_times(agent: Any, n: int, steps: int, journal: Path, pool: WorkerPool | int,
               sandbox: bool = False) -> tuple[list[float], int]:
    """Seconds per step of ``n`` agents stepping together (after one warm-up step), and the
    pool's peak resident memory."""
    with wb.Run(seed=1, policy="parallel", journal=journal, workers=pool,
                concurrency=max(64, n)) as run:
        for i in range(n):
            run.add_agent(f"a{i}", agent, sandbox=sandbox, state={"limit": BIG},
                          capabilities=CAPS)
        run.step()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            run.step()
            times.append(time.perf_counter() - t0)
    peak = peak_rss(pool.pids()) if isinstance(pool, WorkerPool) else 0
    return times, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--agents", default="1,16,256")
    parser.add_argument("--starts", type=int, default=5, help="samples of the cached start")
    args = parser.parse_args()
    sizes = [int(n) for n in args.agents.split(",")]
    cores = os.cpu_count() or 1
    print(f"machine: {cores} cores; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        build, first = cold_start(tmp)
        print(f"cold start, empty cache: runtime built and compiled in {build:.1f} s; first "
              f"step after {first:.1f} s")
        runtime_path(progress=False)  # this process's cache (not timed)
        for workers in (0, 1):
            where = "in-process" if workers == 0 else "new pool of 1 worker"
            print(f"cached start, {where} (median of {args.starts}): "
                  f"{cached_start(tmp, workers, args.starts) * 1e3:.0f} ms")
        c_agent = build_agent(ROOT / "examples" / "agents" / "counter.c", tmp / "counter.wasm")
        kinds: list[tuple[str, Any, bool, bool]] = [
            ("C (clang), pool", c_agent, False, True),
            ("Python sandboxed, pool", counter, True, True),
            ("Python sandboxed, in-process", counter, True, False),
            ("Python in-process", counter, False, False),
        ]
        print(f"\n{'agents':>6} {'executor':<30} {'median step':>12} {'agent-steps/s':>14} "
              f"{'pool peak RSS':>14}")
        peaks: dict[int, int] = {}
        for n in sizes:
            for label, agent, sandbox, pooled in kinds:
                pool: WorkerPool | int = WorkerPool(cores) if pooled else 0
                try:
                    times, peak = step_times(agent, n, args.steps, tmp / f"{label}{n}.wbj",
                                             pool, sandbox)
                finally:
                    if isinstance(pool, WorkerPool):
                        pool.close()
                med = statistics.median(times)
                shown = f"{peak / 2**20:.0f} MiB" if peak else "-"
                print(f"{n:>6} {label:<30} {med * 1e3:>10.2f}ms {n / med:>14,.0f} {shown:>14}")
                if sandbox and pooled:
                    peaks[n] = peak
        low, high = min(sizes), max(sizes)
        if high > low:
            per = (peaks[high] - peaks[low]) / (high - low)
            print(f"\nmemory: {per / 2**20:.1f} MiB more pool peak RSS per sandboxed agent "
                  f"stepping at once ({low} -> {high} agents); 24 GiB holds about "
                  f"{int((24 * 2**30 - peaks[low]) // per):,} such agents stepping together")


if __name__ == "__main__":
    main()

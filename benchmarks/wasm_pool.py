"""The WebAssembly worker pool: frame round trip, worker start, 1,000 agents in one pool.

Measures, on this machine:
- the round trip of one small frame: to a bare echo process, and kernel → worker → kernel
  through the pool's reader thread (``WorkerPool.ping``);
- worker start time, from the request to the first answered ping: fork server (which has
  imported wasmtime once) versus a fresh interpreter per worker (``start_method="spawn"``),
  and the start of a whole pool (its own fork server and one worker), which a run that owns
  its pool pays once;
- 1,000 small WAT agents (tests/pool_agents.py's counter: log, random, a little arithmetic)
  in one pool sized to the CPU count: mean load time, worker memory per agent (one module
  shared by all, and a distinct module each), and agent-steps per second in a real
  ``wb.Run`` (policy "parallel"), beside the same agents run in-process
  (``LocalWasmExecutor``) and an equivalent in-process Python agent.

Prints medians and a table; run with ``python benchmarks/wasm_pool.py [--agents N]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import workbench as wb
from tests.pool_agents import CAPS, counter_wasm, marked
from workbench._wasm._frames import FrameReader, FrameWriter, Kind
from workbench._wasm._local import LocalWasmExecutor
from workbench._wasm._pool import WorkerPool


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raw_round_trip(samples: int) -> float:
    """Frames echoed by a forked child that does nothing else (no threads, no queues)."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        ours.close()
        reader, writer = FrameReader(theirs), FrameWriter(theirs)
        while (frame := reader.read()) is not None:
            writer.write(Kind.PONG, frame.rid, frame.payload)
        os._exit(0)
    theirs.close()
    reader, writer = FrameReader(ours), FrameWriter(ours)
    times = []
    for i in range(samples + 100):
        t0 = time.perf_counter()
        writer.write(Kind.PING, i, b"x")
        reader.read()
        times.append(time.perf_counter() - t0)
    reader.close()
    ours.close()
    os.waitpid(pid, 0)
    return statistics.median(times[100:])


def frame_round_trip(samples: int) -> float:
    with WorkerPool(1) as pool:
        for _ in range(100):
            pool.ping()
        return statistics.median(pool.ping()[0] for _ in range(samples))


def worker_start(method: str, samples: int) -> float:
    """A worker replaced in a running pool (whose fork server is up), to its first pong."""
    times = []
    with WorkerPool(1, start_method=method) as pool:
        for _ in range(samples):
            os.kill(pool.pids()[0], signal.SIGKILL)
            while pool.alive:  # until the pool has seen the death
                time.sleep(0.001)
            t0 = time.perf_counter()
            pool.pids()  # starts the replacement
            pool.ping()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pool_start(samples: int) -> float:
    """A new pool of one worker, fork server included (what a run owning its pool pays)."""
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        with WorkerPool(1) as pool:
            pool.ping()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def python_counter(state: Any, inbox: list[Any], host: Any) -> dict[str, Any]:
    """The counter agent's logic in Python, for the in-process Python executor."""
    host.log(str(state))
    n = ((state or 0) * 31 + (host.random() >> 40) + 1) % 1_000_000_007
    return {"state": n, "outbox": [], "status": "ready"}


def run_steps(agents: dict[str, Any], steps: int, journal: Path) -> list[float]:
    """Seconds per step of a parallel run of ``agents`` (after one warm-up step)."""
    with wb.Run(seed=1, policy="parallel", journal=journal, concurrency=64) as run:
        for name, agent in agents.items():
            run.add_agent(name, agent, capabilities=CAPS)
        run.step()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            run.step()
            times.append(time.perf_counter() - t0)
    return times


def timed(make: Callable[[str], Any], n: int) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    agents = {f"a{i}": make(f"a{i}") for i in range(n)}
    return agents, (time.perf_counter() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    n, cores = args.agents, os.cpu_count() or 1
    wasm = counter_wasm()
    print(f"machine: {cores} cores; python {sys.version.split()[0]}")

    raw = raw_round_trip(2000)
    boot = pool_start(10)
    rtt = frame_round_trip(2000)
    fork = worker_start("forkserver", 30)
    spawn = worker_start("spawn", 8)
    print(f"pool start, fork server + 1 worker (median of 10):     {boot * 1e3:8.1f} ms")
    print(f"frame round trip, bare echo process (median of 2000):     {raw * 1e6:6.1f} us")
    print(f"frame round trip kernel->worker->kernel (median of 2000): {rtt * 1e6:6.1f} us")
    print(f"worker start to first pong, fork server (median of 30):  {fork * 1e3:6.1f} ms")
    print(f"worker start to first pong, spawn (median of 8):         {spawn * 1e3:6.1f} ms")

    rows = []
    with tempfile.TemporaryDirectory() as tmp, WorkerPool(cache_dir=Path(tmp) / "c") as pool:
        base = sum(rss_bytes(p) for p in pool.pids())
        pooled, load = timed(lambda a: pool.executor(wasm, name=a, capabilities=CAPS), n)
        loaded = sum(rss_bytes(p) for p in pool.pids())
        times = run_steps(pooled, args.steps, Path(tmp) / "pool.wbj")
        after = sum(rss_bytes(p) for p in pool.pids())
        print(f"\n{n} agents in {pool.size} workers: load {load * 1e3:.2f} ms/agent (mean), "
              f"worker RSS {base / 2**20:.0f} MiB empty -> {loaded / 2**20:.0f} MiB "
              f"loaded -> {after / 2**20:.0f} MiB after {args.steps + 1} steps: "
              f"{(after - base) / n / 1024:.1f} KiB per agent")
        rows.append(("wasm, worker pool", load, times))
        local, load = timed(lambda a: LocalWasmExecutor(wasm, name=a, capabilities=CAPS), n)
        rows.append(("wasm, in-process", load, run_steps(local, args.steps,
                                                         Path(tmp) / "local.wbj")))
        rows.append(("python, in-process", 0.0,
                     run_steps(dict.fromkeys(pooled, python_counter), args.steps,
                               Path(tmp) / "py.wbj")))

    with tempfile.TemporaryDirectory() as tmp, WorkerPool(cache_dir=Path(tmp) / "c") as pool:
        base = sum(rss_bytes(p) for p in pool.pids())
        _, load = timed(lambda a: pool.executor(marked(a.encode()), name=a,
                                                capabilities=CAPS), n)
        loaded = sum(rss_bytes(p) for p in pool.pids())
        print(f"{n} agents with distinct modules: compile {load * 1e3:.2f} ms/agent (mean), "
              f"worker RSS {base / 2**20:.0f} -> {loaded / 2**20:.0f} MiB: "
              f"{(loaded - base) / n / 1024:.1f} KiB per agent")

    print(f"\n{'executor':<20} {'load/agent':>11} {'median step':>12} {'agent-steps/s':>14}")
    for name, load, times in rows:
        med = statistics.median(times)
        print(f"{name:<20} {load * 1e3:>9.2f}ms {med * 1e3:>10.1f}ms {n / med:>14,.0f}")


if __name__ == "__main__":
    main()

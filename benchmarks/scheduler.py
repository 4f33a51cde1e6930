"""Scheduler overhead per step for 1, 16, 256 and 1,000 in-process agents.

Each agent is a trivial Python step function, so what is measured is the scheduler:
selection, delivery, threads, host-call bookkeeping, validation, journaling, commit.
Prints medians over several steps; run with `python benchmarks/scheduler.py`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import workbench as wb


def tick(state: Any, inbox: list[dict[str, Any]], host: Any) -> dict[str, Any]:
    return {"state": state + 1, "outbox": [], "status": "ready"}


def chatty(state: Any, inbox: list[dict[str, Any]], host: Any) -> dict[str, Any]:
    host.random()
    return {"state": state + len(inbox), "outbox": [(state_peer(host), {"x": 1})],
            "status": "ready"}


def state_peer(host: Any) -> str:
    return "a0"


def measure(n: int, steps: int, agent: Any, folder: Path) -> list[float]:
    with wb.Run(seed=0, policy="parallel", journal=folder / f"{n}-{agent.__name__}.wbj",
                concurrency=64) as run:
        for i in range(n):
            run.add_agent(f"a{i}", agent, state=0)
            if agent is chatty:
                run.connect(f"a{i}", "a0")
        run.step()  # warm-up: threads, header
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            run.step()
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(f"{'agents':>7} {'workload':>9} {'median step':>12} {'per agent-step':>15} "
          f"{'agent-steps/s':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 16, 256, 1000):
            for name, agent in (("trivial", tick), ("message", chatty)):
                steps = args.steps if n < 1000 else max(5, args.steps // 4)
                med = statistics.median(measure(n, steps, agent, Path(tmp)))
                print(f"{n:>7} {name:>9} {med * 1e3:>10.2f}ms {med / n * 1e6:>13.1f}us "
                      f"{n / med:>14.0f}")


if __name__ == "__main__":
    main()

"""How precisely the wall-clock backstop stops a spinning WebAssembly guest.

A guest that loops forever with (effectively) unlimited fuel is stopped only by the epoch
deadline. This runs it TRIALS times under a 100 ms backstop and reports how long each step
took from the call to the returned timeout fault: median, p99 and max. It fails (exit 1)
if p99 exceeds 150 ms or any trial ends with something other than a timeout. The epoch
ticker is a thread: on an oversubscribed machine its wake-ups are late, so the load average
is printed with the numbers.

    python benchmarks/wasm_backstop.py [--trials 200] [--timeout-ms 100] [--budget-ms 150]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import wasmtime

from workbench._wasm._abi import StepOutcome
from workbench._wasm._sandbox import TICK_S, compile_module, run_step

SPIN = Path(__file__).resolve().parent.parent / "examples" / "agents" / "spin.wat"


class _NoHost:
    """The spinning guest imports nothing; any host call would be a bug."""

    def infer(self, request: bytes) -> bytes:
        raise AssertionError("unexpected host call")

    def log(self, text: bytes) -> None:
        raise AssertionError("unexpected host call")

    def random(self) -> int:
        raise AssertionError("unexpected host call")

    def now(self) -> int:
        raise AssertionError("unexpected host call")


def trial(agent: object, timeout_s: float) -> tuple[float, StepOutcome]:
    started = time.perf_counter()
    outcome = run_step(agent, b'{"agent":"spin","inbox":[],"state":null,"step":0}',  # type: ignore[arg-type]
                       _NoHost(), fuel=1 << 62, memory_bytes=1 << 20, timeout_s=timeout_s,
                       max_output_bytes=1 << 10)
    return time.perf_counter() - started, outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--timeout-ms", type=float, default=100.0)
    parser.add_argument("--budget-ms", type=float, default=150.0)
    args = parser.parse_args()
    agent = compile_module(bytes(wasmtime.wat2wasm(SPIN.read_text())), source=str(SPIN),
                           capabilities=())
    timeout_s = args.timeout_ms / 1000
    times = []
    for _ in range(args.trials):
        elapsed, outcome = trial(agent, timeout_s)
        if outcome.fault is None or outcome.fault.kind != "timeout":
            print(f"expected a timeout fault, got {outcome}", file=sys.stderr)
            return 1
        times.append(elapsed * 1000)
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"wall-clock backstop {args.timeout_ms:.0f} ms, epoch tick {TICK_S * 1000:.0f} ms, "
          f"{args.trials} trials: median {statistics.median(times):.1f} ms, "
          f"p99 {p99:.1f} ms, min {times[0]:.1f} ms, max {times[-1]:.1f} ms "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    if p99 > args.budget_ms:
        print(f"p99 {p99:.1f} ms is over the budget of {args.budget_ms:.0f} ms",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Kernel-side cost of the notebook views: step time with and without a view attached, and
the messages a view sends per second (benchmarks/views.py prints these beside the front
end's figures; run this file alone for the kernel side only).

Measured side by side in one process, alternating "without" and "with" runs so that machine
noise falls on both: the main job (the README's writers' room on the default model) and
teams of 16 and 1,000 trivial Python agents, the worst case for a view (nothing else to do
per step but fold the step into the document).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import workbench as wb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from views import percentile

ROOT = Path(__file__).resolve().parent.parent


def tick(state: Any, inbox: Any, host: Any) -> Any:
    return {"state": state + 1, "outbox": [], "status": "ready"}


def trivial_team(journal: Path, agents: int) -> wb.Run:
    run = wb.Run(seed=0, policy="parallel", journal=journal, workers=0)
    for i in range(agents):
        run.add_agent(f"a{i}", tick, state=0)
    return run


def main_job_team(journal: Path) -> wb.Run:
    """The README's main job (examples/conversation.py): two writers, two critics, C
    agents in the worker pool, the default model."""
    sys.path.insert(0, str(ROOT / "examples"))
    import conversation  # type: ignore[import-not-found]

    writer, critic = conversation.agent_module("writer"), conversation.agent_module("critic")
    run = wb.Run(seed=7, policy="parallel", model="smollm2-135m-instruct", journal=journal)
    for i, topic in enumerate(conversation.TOPICS, 1):
        run.add_agent(f"writer-{i}", writer, capabilities=["infer", "log"],
                      state={"critic": f"critic-{i}", "rounds": 2, "round": 0,
                             "topic": topic, "final": ""})
        run.add_agent(f"critic-{i}", critic, capabilities=["infer", "log"],
                      state={"reviewed": 0})
        run.connect(f"writer-{i}", f"critic-{i}", both=True)
    for i, topic in enumerate(conversation.TOPICS, 1):
        run.send(f"writer-{i}", {"topic": topic})
    return run


def timed_run(make: Any, journal: Path, steps: int | None, view: bool) -> dict[str, float]:
    """Seconds per step of one run (with a view attached before it starts, or none), and
    the messages the view sent per second of running."""
    run = make(journal)
    shown = run.view() if view else None
    lags: list[float] = []
    if shown is not None:
        def send(msg: dict[str, Any], buffers: Any = None) -> None:
            """No front end: note how long after its commit each step went out."""
            t0 = shown._vd._t0  # type: ignore[union-attr]  # the document's clock origin
            now = time.monotonic()
            for step in msg.get("steps", []) if msg["type"] == "delta" else []:
                if t0 is not None and step["time"] is not None:
                    lags.append(now - (t0 + step["time"]))

        shown.send = send  # type: ignore[method-assign]
    began = time.perf_counter()
    run.run(steps)
    elapsed = time.perf_counter() - began
    count = run.step_index
    run.close()
    sent = shown.messages_sent if shown is not None else 0
    return {"step_s": elapsed / max(1, count), "msgs_per_s": sent / elapsed,
            "lag_p50_ms": percentile(lags, 0.5) * 1e3, "lag_p95_ms": percentile(lags, 0.95) * 1e3}



def side_by_side(make: Any, steps: int | None, pairs: int, folder: Path,
                 label: str) -> dict[str, Any]:
    without: list[float] = []
    with_view: list[dict[str, float]] = []
    for i in range(pairs):
        without.append(timed_run(make, folder / f"{label}-{i}-a.wbj", steps, False)["step_s"])
        with_view.append(timed_run(make, folder / f"{label}-{i}-b.wbj", steps, True))
    a = statistics.median(without)
    b = statistics.median(r["step_s"] for r in with_view)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in with_view)

    return {"label": label, "without_ms": a * 1e3, "with_ms": b * 1e3,
            "overhead_pct": (b / a - 1) * 100, "msgs_per_s": med("msgs_per_s"),
            "lag_p50_ms": med("lag_p50_ms"), "lag_p95_ms": med("lag_p95_ms")}


def kernel_figures(*, pairs: int = 3, main_job: bool = True) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if main_job:
            main_job_team(folder / "warm.wbj").close()  # model converted and loaded once
            rows.append(side_by_side(main_job_team, None, pairs, folder, "main job"))
        for agents, steps in ((16, 300), (1000, 20)):
            rows.append(side_by_side(lambda j, n=agents: trivial_team(j, n), steps, pairs,
                                     folder, f"{agents} trivial agents"))
    return rows


def print_kernel(rows: list[dict[str, Any]]) -> None:
    print("kernel side: step time without / with a view attached (medians of alternating "
          "runs), messages the view sent per second, and how long after its commit a step "
          "left the kernel in a delta (p50 / p95)")
    print(f"{'run':<22}{'without ms':>12}{'with ms':>10}{'overhead':>10}{'msgs/s':>9}"
          f"{'commit->sent ms':>18}")
    for r in rows:
        print(f"{r['label']:<22}{r['without_ms']:>12.2f}{r['with_ms']:>10.2f}"
              f"{r['overhead_pct']:>9.1f}%{r['msgs_per_s']:>9.1f}"
              f"{r['lag_p50_ms']:>10.1f} / {r['lag_p95_ms']:<6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--no-main-job", action="store_true",
                        help="skip the main job (it needs the default model)")
    args = parser.parse_args()
    print_kernel(kernel_figures(pairs=args.pairs, main_job=not args.no_main_job))


if __name__ == "__main__":
    main()

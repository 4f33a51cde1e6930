"""End to end in a real JupyterLab in Chromium: how long after a step commits in the kernel
it shows in the view's DOM, for a run of 16 agents driven by `run.start()`.

The kernel notes each step's commit on the wall clock (from the committed event's
monotonic time); the page notes, with a MutationObserver, when the view's step label first
shows that step. Both clocks are this machine's. Prints p50 / p95 / max in milliseconds.
Run with `python benchmarks/views_lab.py`; needs JupyterLab, Playwright and Debian's
`chromium` package (as the end-to-end tests do).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.views import percentile
from tests.lab import chromium, jupyterlab, open_notebook

CELL = """\
import json, time
import workbench as wb

def pacer(state, inbox, host):
    time.sleep(PACE_S)  # steps of about PACE_S seconds, like a model call
    return {"state": state + 1, "outbox": [(f"a{state % AGENTS}", state)], "status": "ready"}

def agent(state, inbox, host):
    return {"state": state + len(inbox), "status": "idle"}

run = wb.Run(seed=1, policy="parallel", journal=JOURNAL, workers=0)
run.add_agent("pacer", pacer, state=0)
for i in range(AGENTS):
    run.add_agent(f"a{i}", agent, state=0)
    run.connect("pacer", f"a{i}")
commits = open(COMMITS, "w")

def note(event):
    wall = time.time() - (time.monotonic() - event.time)
    commits.write(json.dumps([event.step, wall]) + "\\n")
    commits.flush()

run.subscribe(note, kinds=["step_committed"])
"""


def measure(steps: int, agents: int, pace_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        commits_file = tmp / "commits.jsonl"
        with jupyterlab(tmp / "lab") as lab, chromium(tmp / "browser") as browser:
            page = open_notebook(lab, browser, "lag.ipynb", [
                f"JOURNAL = {str(tmp / 'j.wbj')!r}\nCOMMITS = {str(commits_file)!r}\n"
                f"AGENTS = {agents}\nPACE_S = {pace_s}\n" + CELL, "run",
                f"run.start({steps})"])
            page.evaluate("""() => {
                window.__shown = {};
                const note = () => {
                    const label = document.querySelector('[data-step-label]');
                    const m = label && /of (\\d+)/.exec(label.textContent);
                    if (m && !(m[1] in window.__shown)) window.__shown[m[1]] = Date.now();
                };
                new MutationObserver(note).observe(document.body,
                    {subtree: true, childList: true, characterData: true});
            }""")
            page.evaluate("() => window.jupyterapp.commands.execute('runmenu:run-all')")
            deadline = time.monotonic() + steps * pace_s * 4 + 60
            while time.monotonic() < deadline:
                shown = page.evaluate("() => window.__shown")
                if str(steps - 1) in shown:
                    break
                time.sleep(0.2)
            shown = page.evaluate("() => window.__shown")
        committed = {}
        for line in commits_file.read_text().splitlines():
            step, wall = json.loads(line)
            committed[step] = wall
    lags = [(shown[str(t)] / 1000 - wall) * 1000 for t, wall in committed.items()
            if str(t) in shown]
    lags.sort()
    return {"agents": agents + 1, "steps": len(committed), "seen": len(lags),
            "p50": statistics.median(lags), "p95": percentile(lags, 0.95),
            "max": lags[-1]}


def print_lab(row: dict[str, Any]) -> None:
    print(f"JupyterLab in Chromium, {row['agents']} agents: a step's commit to its step label "
          f"in the DOM over {row['seen']} of {row['steps']} steps: p50 {row['p50']:.0f} ms, "
          f"p95 {row['p95']:.0f} ms, max {row['max']:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--pace", type=float, default=0.1, help="seconds per step")
    args = parser.parse_args()
    print_lab(measure(args.steps, 15, args.pace))


if __name__ == "__main__":
    main()



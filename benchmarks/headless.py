"""The cost of `workbench run` over running the same code as a plain script.

The same run (Python agents, the deterministic FakeEngine, a fixed amount of CPU work per
step) is executed as ``python job.py --steps N`` and as ``workbench run job.ipynb -p steps=N``
for a small and a large N. Fixed overhead: the difference at the small N. Per-step overhead:
the difference of the slopes (seconds per step), as a percentage of the script's slope.
Medians of --repeat runs each.

    python benchmarks/headless.py [--small 10] [--large 200] [--repeat 3] [--work 200000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

CODE = """\
import workbench as wb
from workbench.testing import FakeEngine


def worker(state, inbox, host):
    total = 0
    for i in range(WORK):  # a fixed amount of CPU work per step
        total = (total * 31 + i) % 1_000_003
    reply = host.infer({{"prompt": str(total), "max_tokens": 2}})
    return {{"state": {{"n": state["n"] + 1, "last": reply["text"]}}, "outbox": [],
            "status": "ready"}}


run = wb.Run(seed=1, policy="parallel", model=FakeEngine(), journal="bench.wbj",
             overwrite=True)
run.add_agent("a", worker, state={{"n": 0, "last": ""}})
run.add_agent("b", worker, state={{"n": 0, "last": ""}})
summary = run.run(steps=steps)
run.close()
print(summary)
"""


def write_jobs(folder: Path, work: int) -> tuple[Path, Path]:
    body = CODE.replace("WORK", str(work)).format()
    script = folder / "job.py"
    script.write_text("import argparse\nparser = argparse.ArgumentParser()\n"
                      "parser.add_argument('--steps', type=int, default=10)\n"
                      "steps = parser.parse_args().steps\n" + body)
    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    params = nbformat.v4.new_code_cell("steps = 10")  # type: ignore[no-untyped-call]
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]  # type: ignore[no-untyped-call]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    notebook = folder / "job.ipynb"
    nbformat.write(nb, notebook)  # type: ignore[no-untyped-call]
    return script, notebook


def timed(cmd: list[str], cwd: Path, summary: Path | None = None) -> tuple[float, float]:
    """(wall seconds, seconds `workbench run` spent writing outputs, from its summary)."""
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=600)
    wall = time.perf_counter() - started
    outputs = json.loads(summary.read_text())["outputs_seconds"] if summary else 0.0
    return wall, outputs


def median_time(cmd: list[str], cwd: Path, repeat: int,
                summary: Path | None = None) -> tuple[float, float]:
    runs = [timed(cmd, cwd, summary) for _ in range(repeat)]
    return (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--large", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=int, default=200_000, help="loop iterations per step")
    args = parser.parse_args()
    workbench = str(Path(sys.executable).parent / "workbench")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        script, notebook = write_jobs(folder, args.work)
        rows = {}
        for steps in (args.small, args.large):
            out = folder / f"out-{steps}"
            plain, _ = median_time([sys.executable, str(script), "--steps", str(steps)],
                                   folder, args.repeat)
            headless, outputs = median_time(
                [workbench, "run", str(notebook), "-p", f"steps={steps}", "-o", str(out)],
                folder, args.repeat, out / "summary.json")
            rows[steps] = (plain, headless, outputs)
            print(f"{steps:5d} steps: script {plain:6.2f} s   workbench run {headless:6.2f} s "
                  f"(of which writing journal copy, trace and report {outputs:.2f} s)")
    (p_small, h_small, o_small), (p_large, h_large, o_large) = (rows[args.small],
                                                                rows[args.large])
    span = args.large - args.small
    script_slope = (p_large - p_small) / span
    run_slope = (h_large - h_small) / span
    cells_slope = (h_large - o_large - h_small + o_small) / span
    print(f"fixed overhead: {h_small - p_small:.2f} s (at {args.small} steps)")
    print(f"per step: script {script_slope * 1e3:.2f} ms, workbench run {run_slope * 1e3:.2f} "
          f"ms: {100 * (run_slope - script_slope) / script_slope:+.1f}%; without writing the "
          f"outputs {cells_slope * 1e3:.2f} ms: "
          f"{100 * (cells_slope - script_slope) / script_slope:+.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A notebook cell defines a step function and a run uses it with sandbox=True, in a real
Jupyter kernel (nbclient): the journal shows its steps, ``wb.replay`` and ``workbench
replay`` pass, and a cell's exception comes back naming the cell's line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

import workbench as wb
from tests.pysandbox_helpers import python_runtime

__all__ = ["python_runtime"]  # built before the kernel starts: the kernel finds it cached

CELLS = [
    "import workbench as wb",
    '''\
PREFIX = "draft"

def writer(state, inbox, host):
    n = state["n"] + 1
    return {"state": {"n": n}, "outbox": [("critic", {"draft": f"{PREFIX} {n}"})],
            "status": "done" if n == 3 else "ready"}

def critic(state, inbox, host):
    if inbox[-1]["payload"]["draft"].endswith("3"):
        raise ValueError("third draft rejected")
    return {"state": state + len(inbox), "status": "idle"}''',
    '''\
run = wb.Run(seed=7, journal="team.wbj", workers=1)
run.add_agent("writer", writer, sandbox=True, state={"n": 0}, capabilities=[])
run.add_agent("critic", critic, sandbox=True, state=0, capabilities=[])
run.connect("writer", "critic")
run.run(10)
run.close()
print(wb.replay("team.wbj", workers=0).steps)''',
]


def test_a_cell_function_runs_sandboxed_from_a_real_kernel(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    NotebookClient(nb, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    journal = tmp_path / "team.wbj"
    steps = [r for r in wb.read_journal(journal) if r["k"] == "step"]
    assert printed.strip() == str(len(steps)) and len(steps) >= 4
    fault = next(r["fault"] for r in wb.read_journal(journal)
                 if r["k"] == "agent" and r["fault"])
    assert fault["detail"] == "ValueError: third draft rejected"
    assert fault["data"]["where"] == "critic line 10"  # the line in the cell
    assert "critic line 10: raise ValueError" in fault["data"]["traceback"]
    done = subprocess.run([sys.executable, "-m", "workbench", "replay", str(journal)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    header = next(iter(wb.read_journal(journal)))
    assert header["agents"][0]["id"]["kind"] == "python_sandbox"

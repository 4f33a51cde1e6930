"""The golden journals: small runs whose bytes tests/test_golden.py re-creates and replays.

    python tests/golden/make_golden.py        # rewrite them (after a format version bump)

Each scenario runs in the current directory with relative journal paths, no model and the
WebAssembly agents in-process, so its bytes depend only on the workbench's journal format
(and on the agents here and the committed .wasm files): a change of bytes without a
JOURNAL_VERSION bump is what the golden test exists to catch.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import workbench as wb

HERE = Path(__file__).resolve().parent
COUNTER = HERE / "counter.wasm"  # examples/agents/counter.wat, assembled once
SPIN = HERE / "spin.wasm"  # examples/agents/spin.wat, assembled once


def talker(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    heard = [m["payload"] for m in inbox]
    host.log(f"heard {len(heard)}")
    n = state["n"] + 1
    out = [("listener", {"n": n, "r": host.random() % 1000, "t": host.now()})]
    return {"state": {"n": n, "heard": heard[-2:]}, "outbox": out,
            "status": "ready" if n < 5 else "done"}


def listener(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    total = state + sum(m["payload"]["n"] for m in inbox)
    return {"state": total, "outbox": [("talker", {"total": total})], "status": "idle"}


def quieter(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    return {"state": state, "outbox": [], "status": "idle"}


def flaky(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    if state == 2:
        raise RuntimeError("flaky gave up at 2")
    return {"state": state + 1, "status": "ready"}


PYTHON_AGENTS: dict[str, Callable[..., Any]] = {"talker": talker, "listener": listener,
                                                 "flaky": flaky}


def python_run(path: str) -> wb.Run:
    run = wb.Run(seed=11, policy="round_robin", journal=path, workers=0)
    run.add_agent("talker", talker, state={"n": 0, "heard": []})
    run.add_agent("listener", listener, state=0)
    run.connect("talker", "listener", both=True)
    run.send("talker", {"hello": "golden"})
    return run


def make_python() -> None:
    with python_run("python.wbj") as run:
        run.run(8)


def make_wasm() -> None:
    with wb.Run(seed=12, policy="parallel", journal="wasm.wbj", workers=0) as run:
        run.add_agent("c1", COUNTER, capabilities=["random", "now", "log"], state=None)
        run.add_agent("c2", COUNTER, capabilities=["random", "now", "log"], state=None)
        run.add_agent("flaky", flaky, state=0)
        run.run(4)


def make_fault() -> None:
    with wb.Run(seed=13, policy="parallel", journal="fault.wbj", workers=0) as run:
        run.add_agent("spin", SPIN, fuel=100_000, capabilities=[], state=None)
        run.add_agent("flaky", flaky, state=0, on_fault="restart")
        run.run(4)


def make_fork() -> None:
    with python_run("parent.wbj") as run:
        run.run(4)
        child = run.fork(at=1, journal="fork.wbj", agents={"listener": quieter})
        child.run(3)
        child.close()


SCENARIOS = {"python": make_python, "wasm": make_wasm, "fault": make_fault,
             "fork": make_fork}
JOURNALS = ("python.wbj", "wasm.wbj", "fault.wbj", "parent.wbj", "fork.wbj")


def make_all(folder: Path) -> None:
    """Write every golden journal (and the modules/ they store) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    here = Path.cwd()
    os.chdir(folder)
    try:
        for name in JOURNALS:
            Path(name).unlink(missing_ok=True)
        shutil.rmtree("modules", ignore_errors=True)
        for make in SCENARIOS.values():
            make()
    finally:
        os.chdir(here)


if __name__ == "__main__":
    make_all(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)

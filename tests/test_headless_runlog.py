"""The run log: every Run (and fork) names its journal once it creates it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench._runlog import RUN_LOG_ENV, read_run_log


def counter(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    n = state["n"] + 1
    return {"state": {"n": n}, "outbox": [], "status": "done" if n >= 3 else "ready"}


def test_runs_and_forks_append_their_journals(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "runs.jsonl"
    monkeypatch.setenv(RUN_LOG_ENV, str(log))
    unused = wb.Run(seed=1, journal=tmp_path / "never.wbj")
    unused.add_agent("c", counter, state={"n": 0})
    unused.close()  # never stepped: no journal, no line
    with wb.Run(seed=1, journal="a/journal.wbj") as run:
        run.add_agent("c", counter, state={"n": 0})
        run.run()
        with run.fork(at=0, journal=tmp_path / "fork.wbj") as child:
            child.run()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines == [{"journal": str(tmp_path / "a" / "journal.wbj")},
                     {"journal": str(tmp_path / "fork.wbj")}]
    assert read_run_log(log) == [tmp_path / "a" / "journal.wbj", tmp_path / "fork.wbj"]


def test_without_the_variable_nothing_is_written(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUN_LOG_ENV, raising=False)
    with wb.Run(seed=1, journal="j.wbj") as run:
        run.add_agent("c", counter, state={"n": 0})
        run.run()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.wbj"]


def test_reading_skips_damaged_lines_and_repeats(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    long_line = json.dumps({"journal": "x" * 70_000})
    log.write_text('{"journal": "/a.wbj"}\nnot json\n' + long_line + '\n[1]\n'
                   '{"journal": "/a.wbj"}\n{"journal": "/b.wbj"}\n{"journal": "/torn')
    assert read_run_log(log) == [Path("/a.wbj"), Path("/b.wbj")]
    assert read_run_log(tmp_path / "missing.jsonl") == []

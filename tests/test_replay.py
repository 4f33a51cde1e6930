"""Replay verifies a recorded run and names the first divergence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench.testing import FakeEngine


def counter(limit: int, bump: int) -> Any:
    def agent(state: Any, inbox: list[dict[str, Any]], host: Any) -> dict[str, Any]:
        n = state["n"] + 1
        value = n * 10 + (bump if n >= 4 else 0)  # the constant matters from step 4 on
        reply = host.infer({"prompt": f"n={n}", "max_tokens": 2}) if n % 2 else {"text": ""}
        return {"state": {"n": n, "said": reply["text"], "r": host.random() % 1000},
                "outbox": [("sink", {"value": value})], "status": "ready" if n < limit else "done"}

    return agent


def sink(state: Any, inbox: list[dict[str, Any]], host: Any) -> dict[str, Any]:
    return {"state": state + [m["payload"]["value"] for m in inbox], "outbox": [],
            "status": "idle"}


def record(tmp_path: Path, bump: int = 1) -> Path:
    path = tmp_path / "run.wbj"
    with wb.Run(seed=3, policy="round_robin", model=FakeEngine(), journal=path) as run:
        run.add_agent("source", counter(8, bump), state={"n": 0})
        run.add_agent("sink", sink, state=[])
        run.connect("source", "sink")
        run.run()
    return path


def test_replay_of_a_recorded_run_passes_without_a_model(tmp_path: Path) -> None:
    path = record(tmp_path)
    report = wb.replay(path, agents={"source": counter(8, 1), "sink": sink})
    assert report.steps > 8
    assert report.changed_agents == []


def test_changed_constant_fails_at_the_first_differing_step(tmp_path: Path) -> None:
    path = record(tmp_path)
    journal = wb.read_journal(path)
    first_out = next(r for r in journal.records
                     if r["k"] == "agent" and r["a"] == "source" and r["state"]["n"] == 4)
    with pytest.raises(wb.NondeterminismError) as info:
        wb.replay(path, agents={"source": counter(8, 2), "sink": sink})
    err = info.value
    assert (err.step, err.agent, err.field) == (first_out["t"], "source", "out")
    assert err.expected == [{"to": "sink", "seq": 3, "payload": {"value": 41}}]
    assert err.got == [{"to": "sink", "seq": 3, "payload": {"value": 42}}]
    assert f"step {first_out['t']}" in str(err)


def test_python_agents_must_be_given(tmp_path: Path) -> None:
    path = record(tmp_path)
    with pytest.raises(wb.ConfigError, match="replay\\(path, agents="):
        wb.replay(path)


def test_replay_ignores_a_torn_partial_step(tmp_path: Path) -> None:
    path = record(tmp_path)
    data = path.read_bytes()
    journal = wb.read_journal(path)
    last_step = max(i for i, r in enumerate(journal.records) if r["k"] == "step")
    cut = journal.offsets[last_step + 1] + 5  # inside the step's second record
    path.write_bytes(data[:cut])
    report = wb.replay(path, agents={"source": counter(8, 1), "sink": sink})
    assert report.steps == sum(1 for r in journal.records if r["k"] == "commit") - 1


def test_a_journal_of_another_format_version_is_refused(tmp_path: Path) -> None:
    from workbench._journal import JournalWriter, read_journal

    path = record(tmp_path)
    records = read_journal(path).records
    records[0]["v"] = 99
    with JournalWriter(tmp_path / "v99.wbj") as w:
        for r in records:
            w.append(r)
    with pytest.raises(wb.ConfigError, match="format version 99"):
        wb.replay(tmp_path / "v99.wbj", agents={"source": counter(8, 1), "sink": sink})

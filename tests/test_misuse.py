"""Misuse that used to lose data or hang: each is refused at once, with the journal untouched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench import errors


def tick(state: Any, inbox: list[dict[str, Any]], host: Any) -> dict[str, Any]:
    return {"state": state + 1, "outbox": [], "status": "ready"}


def ran(path: Path, steps: int) -> bytes:
    """A closed journal of ``steps`` steps; returns its bytes."""
    with wb.Run(seed=1, journal=path) as run:
        run.add_agent("a", tick, state=0)
        run.run(steps)
    return path.read_bytes()


# --- 1. a journal is never overwritten, and never shared by two live runs -----------------


def test_a_new_run_refuses_an_existing_journal_naming_it_and_the_way_out(
        tmp_path: Path) -> None:
    path = tmp_path / "j.wbj"
    before = ran(path, 5)
    with pytest.raises(errors.JournalExists) as info:
        wb.Run(seed=2, journal=path)
    assert str(path) in str(info.value) and "overwrite=True" in str(info.value)
    assert isinstance(info.value, FileExistsError)
    assert path.read_bytes() == before


def test_overwrite_true_replaces_a_closed_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.wbj"
    ran(path, 5)
    with wb.Run(seed=2, journal=path, overwrite=True) as run:
        run.add_agent("a", tick, state=0)
        run.run(1)
    assert [r["k"] for r in wb.read_journal(path)] == ["run", "step", "agent", "commit"]


def test_two_live_runs_never_share_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.wbj"
    first = wb.Run(seed=1, journal=path)
    second = wb.Run(seed=2, journal=path)  # the path is free until the first run starts
    for run in (first, second):
        run.add_agent("a", tick, state=0)
    first.run(3)
    with pytest.raises(errors.JournalExists):
        second.step()
    with wb.Run(seed=3, journal=path, overwrite=True) as third:
        third.add_agent("a", tick, state=0)
        with pytest.raises(errors.JournalInUse, match="in use by another live run"):
            third.step()
    first.run(2)
    first.close()
    second.close()
    assert len([r for r in wb.read_journal(path) if r["k"] == "commit"]) == 5
    wb.replay(path, agents={"a": tick})


def test_close_releases_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.wbj"
    ran(path, 1)
    with wb.Run(seed=2, journal=path, overwrite=True) as run:
        run.add_agent("a", tick, state=0)
        run.run(2)
    wb.replay(path, agents={"a": tick})


def test_a_fork_refuses_an_existing_journal(tmp_path: Path) -> None:
    taken = tmp_path / "taken.wbj"
    before = ran(taken, 2)
    with wb.Run(seed=1, journal=tmp_path / "j.wbj") as run:
        run.add_agent("a", tick, state=0)
        run.run(3)
        with pytest.raises(errors.JournalExists):
            run.fork(at=1, journal=taken)
    assert taken.read_bytes() == before

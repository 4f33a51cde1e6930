"""Sandbox and replay hardening: each limit of docs/abi.md against real wasmtime and real
worker processes. Every test asserts the documented fault kind and data, that the hostile
agent's siblings journal exactly what they journal without it, and that replay passes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import workbench as wb
from tests.wasm_helpers import agent_wat, wasm
from tests.wasm_hostile import HANG, calls, faults, siblings, team
from workbench._wasm import _sandbox


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    """The siblings' records in a run without a hostile agent."""
    return siblings(team(tmp_path_factory.mktemp("control") / "j.wbj", None, workers=0))


# --- 1. the wall-clock backstop and replay ---------------------------------------------------


def test_a_journaled_timeout_replays_as_given(tmp_path: Path,
                                              control: list[dict[str, object]]) -> None:
    path = team(tmp_path / "j.wbj", HANG, workers=1)
    assert [f["kind"] for f in faults(path)] == ["timeout"]
    assert faults(path)[0]["data"] == HANG.data
    assert [c["fn"] for c in calls(path)] == ["log", "random"]
    assert siblings(path) == control
    header = wb.read_journal(path).records[0]
    assert {a["name"]: a["limits"]["timeout_s"] for a in header["agents"]}["bad"] == 0.3
    # The agent loops forever under 10**15 fuel: replay passes only by not running it.
    assert wb.replay(path).steps == 2
    assert wb.replay(path, workers=1).steps == 2


SPIN = wasm(agent_wat("(local.set $t (i64.const 50000000)) (loop $l "
                      "(local.set $t (i64.sub (local.get $t) (i64.const 1))) "
                      "(br_if $l (i64.ne (local.get $t) (i64.const 0))))"))
SLOW_LIMITS = wb.Limits(fuel=10**9, timeout_s=1.0)  # about 30 ms of guest time per step


@contextmanager
def wall_clock_racing() -> Iterator[None]:
    """Advance this process's epoch as fast as it can: a machine whose every step takes
    far longer than it did when the run was recorded."""
    engine = _sandbox._state().engine
    stop = threading.Event()

    def race() -> None:
        while not stop.is_set():
            engine.increment_epoch()

    thread = threading.Thread(target=race, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_a_clean_step_replays_even_when_replay_runs_past_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "j.wbj"
    with wb.Run(seed=1, journal=path, workers=1) as run:
        run.add_agent("spin", SPIN, capabilities=[], limits=SLOW_LIMITS)
        run.run(2)
    assert faults(path, "spin") == [None]  # one step, then idle
    with wall_clock_racing():  # the same step, run with the backstop armed, times out ...
        armed = wb.Run(seed=1, journal=tmp_path / "armed.wbj", workers=0)
        armed.add_agent("spin", SPIN, capabilities=[], limits=SLOW_LIMITS)
        with armed:
            report = armed.step()
        assert report is not None and report.faults["spin"].kind == "timeout"
        assert wb.replay(path).steps == 1  # ... but replay runs it with fuel as its only bound

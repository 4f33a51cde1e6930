"""The two event streams: committed (lossless, rebuilt from the journal) and live (lossy, with
gap markers); observers get read-only copies and cannot change a run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scenarios import build

import workbench as wb
from workbench._events import (
    CommittedEvent,
    Gap,
    LiveEvent,
    Rewound,
    RunFinished,
    events_from_journal,
)
from workbench.testing import FakeEngine

CONTROLS = (Rewound, RunFinished)


def record_events(events: list[wb.Event]) -> list[CommittedEvent]:
    return [e for e in events if isinstance(e, CommittedEvent) and not isinstance(e, CONTROLS)]


def test_a_subscriber_sees_exactly_the_stream_rebuilt_from_the_journal(tmp_path: Path) -> None:
    seen: list[wb.Event] = []
    with build(4, 1, tmp_path / "j.wbj") as run:
        sub = run.subscribe(seen.append, since=0)
        run.run(30)
        assert sub.flush(10)
    rebuilt = events_from_journal(tmp_path / "j.wbj")
    assert len(rebuilt) > 50
    assert record_events(seen) == rebuilt
    assert [e.index for e in rebuilt] == sorted(e.index for e in rebuilt)
    kinds = {e.kind for e in rebuilt}
    assert {"run_started", "step_started", "agent_stepped", "message", "step_committed"} <= kinds
    assert any(isinstance(e, LiveEvent) for e in seen)  # live events came too


def stuck_recorder() -> tuple[threading.Event, list[wb.Event], Callable[[wb.Event], None]]:
    """(release, received, callback): the callback blocks until ``release`` is set."""
    release = threading.Event()
    got: list[wb.Event] = []

    def slow(event: wb.Event) -> None:
        release.wait(10)
        got.append(event)

    return release, got, slow


def test_a_stuck_subscriber_with_a_queue_of_one_catches_up_without_losing_any(
        tmp_path: Path) -> None:
    release, got, slow = stuck_recorder()

    with build(4, 1, tmp_path / "j.wbj") as run:
        sub = run.subscribe(slow, maxsize=1, since=0,
                            kinds=[k for k in wb.EVENT_KINDS if k not in ("token", "gap")])
        summary = run.run(30)  # finishes although the observer is stuck
        assert summary.steps > 10
        release.set()
        assert sub.flush(20)
        assert sub.caught_up > 0
    assert record_events(got) == events_from_journal(tmp_path / "j.wbj")


def test_live_events_are_dropped_with_a_gap_marker_and_numbered(tmp_path: Path) -> None:
    release, got, slow = stuck_recorder()

    with build(4, 1, tmp_path / "j.wbj") as run:
        sub = run.subscribe(slow, maxsize=2, kinds=("step_running", "gap"))
        run.run(30)
        release.set()
        assert sub.flush(10)
    gaps = [e for e in got if isinstance(e, Gap)]
    assert gaps and sum(g.dropped for g in gaps) == sub.dropped > 0
    running = [e for e in got if e.kind == "step_running"]
    seqs = [e.seq for e in running]
    assert seqs == sorted(seqs) and len(running) + sub.dropped == run.step_index


def _mutate(value: Any, depth: int = 0) -> int:
    """Try to change everything reachable from ``value``; count the attempts refused."""
    refused = 0
    if depth > 20:
        return refused
    if hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            try:
                setattr(value, name, 999)
            except Exception:
                refused += 1
            refused += _mutate(getattr(value, name), depth + 1)
        return refused + _mutate(value.data, depth + 1)
    if hasattr(value, "keys"):
        for key in list(value.keys()):
            for method, args in (("__setitem__", (key, 999)), ("pop", (key,)), ("clear", ())):
                try:
                    getattr(value, method)(*args)
                except Exception:
                    refused += 1
            if key in value:
                refused += _mutate(value[key], depth + 1)
    elif isinstance(value, tuple):
        for item in value:
            refused += _mutate(item, depth + 1)
    elif isinstance(value, list):  # a mutable list would change the run: fail loudly
        raise AssertionError(f"an observer received a mutable list: {value!r}")
    return refused


def test_an_observer_that_mutates_everything_it_can_reach_changes_no_journal_byte(
        tmp_path: Path) -> None:
    refused = [0]

    def vandal(event: wb.Event) -> None:
        refused[0] += _mutate(event)

    with build(7, 3, tmp_path / "quiet.wbj") as run:
        run.run(25)
    with build(7, 3, tmp_path / "vandal.wbj") as run:
        sub = run.subscribe(vandal)
        for _ in range(25):
            run.step()
            state = run.state_of("a0")
            if isinstance(state, dict):
                state.clear()
                state["n"] = -1
        assert sub.flush(10)
        assert sub.errors == 0
    assert refused[0] > 100
    assert (tmp_path / "vandal.wbj").read_bytes() == (tmp_path / "quiet.wbj").read_bytes()


def test_rewind_is_announced_and_the_rebuilt_stream_follows_the_cut(tmp_path: Path) -> None:
    seen: list[wb.Event] = []
    with build(4, 1, tmp_path / "j.wbj") as run:
        sub = run.subscribe(seen.append)
        run.run(6)
        run.rewind(2)
        run.run(2)
        assert sub.flush(10)
    rewound = [e for e in seen if isinstance(e, Rewound)]
    assert [e.step for e in rewound] == [2]
    after = seen[seen.index(rewound[0]) + 1:]
    rebuilt = events_from_journal(tmp_path / "j.wbj", start=rewound[0].index)
    assert record_events(after) == rebuilt
    assert {e.step for e in rebuilt if e.kind == "step_committed"} == {3, 4}


def test_a_step_abandoned_on_an_engine_failure_is_announced(tmp_path: Path) -> None:
    class Broken(FakeEngine):
        def infer_batch(self, requests: Any, on_token: Any = None) -> Any:
            raise RuntimeError("the device fell off")

    def asker(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        host.infer({"prompt": "hi", "max_tokens": 2})
        return {"state": state, "status": "done"}

    seen: list[wb.Event] = []
    with wb.Run(seed=1, model=Broken(), journal=tmp_path / "j.wbj") as run:
        run.add_agent("a", asker, state=0)
        sub = run.subscribe(seen.append)
        with pytest.raises(Exception, match="device fell off"):
            run.step()
        assert sub.flush(10)
    abandoned = [e for e in seen if e.kind == "step_abandoned"]
    assert [e.step for e in abandoned] == [0]
    assert "device fell off" in abandoned[0].data["reason"]
    assert not any(e.kind == "step_committed" for e in seen)


def test_event_kinds_are_checked(tmp_path: Path) -> None:
    with wb.Run(seed=1, journal=tmp_path / "j.wbj") as run, \
            pytest.raises(ValueError, match="unknown event kinds"):
        run.subscribe(print, kinds=("stepped",))

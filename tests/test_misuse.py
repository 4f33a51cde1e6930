"""Misuse that used to lose data or hang: each is refused at once, with the journal untouched."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from workbench import errors
from workbench.testing import FakeEngine, inject_jitter


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


# --- 2. re-entrancy: refused at once, journal untouched ---------------------------------


def calling(action: Any, errors_seen: list[BaseException]) -> Any:
    """An agent that calls ``action(run)`` from inside its step and records what it raised."""
    box: dict[str, wb.Run] = {}

    def agent(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        try:
            action(box["run"])
        except BaseException as exc:
            errors_seen.append(exc)
        return {"state": state + 1, "outbox": [], "status": "ready"}

    agent.box = box  # type: ignore[attr-defined]
    return agent


@pytest.mark.parametrize("action", [
    pytest.param(lambda run: run.step(), id="step"),
    pytest.param(lambda run: run.run(2), id="run"),
    pytest.param(lambda run: run.until(lambda r: False), id="until"),
    pytest.param(lambda run: run.rewind(0), id="rewind"),
    pytest.param(lambda run: run.send("a", 1), id="send"),
    pytest.param(lambda run: run.fork(), id="fork"),
    pytest.param(lambda run: run.close(), id="close"),
    pytest.param(lambda run: run.start(), id="start"),
    pytest.param(lambda run: run.pause(), id="pause"),
    pytest.param(lambda run: run.wait(), id="wait"),
])
def test_driving_the_run_from_inside_a_step_is_refused_at_once(
        tmp_path: Path, action: Any) -> None:
    seen: list[BaseException] = []
    agent = calling(action, seen)
    path = tmp_path / "j.wbj"
    with wb.Run(seed=1, journal=path) as run:
        agent.box["run"] = run
        run.add_agent("a", agent, state=0)
        run.run(3)
        assert run.state_of("a") == 3
    assert len(seen) == 3 and all(isinstance(e, errors.RunBusy) for e in seen), seen
    assert "agent 'a' is in its step" in str(seen[0])
    assert "through what its step returns" in str(seen[0])
    assert [r["t"] for r in wb.read_journal(path) if r["k"] == "commit"] == [0, 1, 2]
    wb.replay(path, agents={"a": agent})


def test_driving_the_run_from_a_background_step_is_refused(tmp_path: Path) -> None:
    seen: list[BaseException] = []
    agent = calling(lambda run: run.rewind(0), seen)
    with wb.Run(seed=1, journal=tmp_path / "j.wbj") as run:
        agent.box["run"] = run
        run.add_agent("a", agent, state=0)
        run.start(steps=2)
        assert run.wait(10) is not None
    assert len(seen) == 2 and all(isinstance(e, errors.RunBusy) for e in seen)
    assert "agent 'a' is in its step" in str(seen[0])


def test_another_thread_cannot_rewind_or_step_during_a_foreground_run(
        tmp_path: Path) -> None:
    inside, release = threading.Event(), threading.Event()

    def held(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        if state == 1:
            inside.set()
            release.wait(10)
        return {"state": state + 1, "outbox": [], "status": "ready"}

    path = tmp_path / "j.wbj"
    with wb.Run(seed=1, journal=path) as run:
        run.add_agent("a", held, state=0)
        driver = threading.Thread(target=run.run, args=(4,))
        driver.start()
        assert inside.wait(10)
        try:
            for action in (lambda: run.rewind(0), run.step, lambda: run.send("a", 1),
                           run.close):
                with pytest.raises(errors.RunBusy, match=r"run\.run\(\) is stepping it"):
                    action()
        finally:
            release.set()
            driver.join()
    assert [r["t"] for r in wb.read_journal(path) if r["k"] == "commit"] == [0, 1, 2, 3]


# --- 4. a Python step that never returns is bounded by timeout_s ----------------------------


@pytest.mark.parametrize("wrapped", [False, True], ids=["scheduler-thread", "helper-thread"])
def test_a_python_step_that_never_returns_gets_a_timeout_fault(tmp_path: Path,
                                                                wrapped: bool) -> None:
    """Bounded in the scheduler's own pool thread, and (when the executor is wrapped, as
    inject_jitter does) on the agent's helper thread."""
    release = threading.Event()
    late = threading.Event()

    def stuck(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        host.log("before")
        if state == 1:
            release.wait()  # never returns while the run waits
            try:
                host.log("after the deadline")  # refused: the step was abandoned
            finally:
                late.set()
        return {"state": state + 1, "outbox": [], "status": "ready"}

    path = tmp_path / "j.wbj"
    run = wb.Run(seed=1, journal=path)
    run.add_agent("a", stuck, state=0, limits=wb.Limits(timeout_s=0.2), on_fault="restart")
    if wrapped:
        inject_jitter(run, seed=0, max_delay=0.0)
    try:
        run.step()
        report = run.step()
        assert report is not None
        fault = report.faults["a"]
        assert (fault.kind, fault.detail, fault.data) == (
            "timeout", "the wall-clock backstop of 0.2 s stopped the step", {"timeout_s": 0.2})
        run.close()  # does not wait for the abandoned step
    finally:
        release.set()
    assert late.wait(10)
    records = list(wb.read_journal(path))
    logs = [r["req"] for r in records if r["k"] == "call"]
    assert logs == ["before", "before"]  # the late call never reached the journal
    states = [r["state"] for r in records if r["k"] == "agent"]
    assert states == [1, 0]  # restarted: the late result was never committed
    wb.replay(path, agents={"a": stuck})  # the timeout is taken as given


def test_time_inside_host_calls_is_not_the_agents(tmp_path: Path) -> None:
    class SlowEngine(FakeEngine):
        def infer_batch(self, requests: Any, on_token: Any = None) -> Any:
            threading.Event().wait(0.3)  # the host's time, longer than the agent's bound
            return super().infer_batch(requests, on_token)

    def asks(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        host.infer({"prompt": "hi", "max_tokens": 2})
        return {"state": state + 1, "outbox": [], "status": "ready"}

    with wb.Run(seed=1, journal=tmp_path / "j.wbj", model=SlowEngine()) as run:
        run.add_agent("a", asks, state=0, limits=wb.Limits(timeout_s=0.1))
        report = run.step()
        assert report is not None and report.faults == {}
        assert run.state_of("a") == 1


# --- 5. pause() racing with the end of the run -------------------------------------------


def test_pause_reports_that_the_run_finished(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def last(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        entered.set()
        release.wait(10)
        return {"state": state + 1, "outbox": [], "status": "ready"}

    with wb.Run(seed=1, journal=tmp_path / "j.wbj") as run:
        run.add_agent("a", last, state=0)
        run.start(steps=1)
        assert entered.wait(10)
        release.set()  # the last step ends before or during pause(): the driver finishes
        summary = run.pause()
        assert isinstance(summary, wb.RunSummary) and summary.steps == 1
        assert run.step() is not None  # the run is idle, not "busy: it has finished"


# --- 6. one output contract for Python and WebAssembly agents ----------------------------


@pytest.mark.parametrize("output", [
    {"state": 1, "extra": 2},
    {"state": 1, "outbox": [{"to": "a", "payload": 1, "cc": "b"}]},
    {"state": 1, "outbox": [{"to": "a"}]},
    {"state": 1, "outbox": [{"to": "", "payload": 1}]},
    {"state": 1, "status": "sleeping"},
    {"state": 1, "outbox": {"to": "a"}},
    {"outbox": []},
    [1, 2],
])
def test_python_agents_get_the_abi_malformed_output_fault(tmp_path: Path,
                                                            output: Any) -> None:
    import json

    from workbench._wasm._abi import decode_output

    wasm = decode_output(json.dumps(output).encode(), max_output_bytes=1 << 20).fault
    with wb.Run(seed=1, journal=tmp_path / "j.wbj") as run:
        run.add_agent("a", lambda state, inbox, host: output, state=0)
        report = run.step()
    assert report is not None and wasm is not None
    python = report.faults["a"]
    assert (python.kind, python.detail, python.data) == (wasm.kind, wasm.detail, wasm.data)


# --- 7. a journal of another format version says which -----------------------------------


def test_another_magic_version_is_named(tmp_path: Path) -> None:
    path = tmp_path / "j.wbj"
    data = ran(path, 1)
    path.write_bytes(b"WBJOURNAL2\n" + data[len(b"WBJOURNAL1\n"):])
    with pytest.raises(errors.JournalVersionError,
                       match=r"format version 2 .*WBJOURNAL2.*reads version 1"):
        wb.read_journal(path)


def test_another_header_version_is_named(tmp_path: Path) -> None:
    from workbench._journal import JournalWriter

    path = tmp_path / "j.wbj"
    with JournalWriter(path) as writer:
        writer.append({"k": "run", "v": 2})
    with pytest.raises(errors.JournalVersionError,
                       match=r"format version 2 \(its run header's v\).*reads version 1"):
        wb.read_journal(path)


# --- 3. names and values that could never be journaled are refused, pointing at the spot ---


@pytest.mark.parametrize("name", ["bad\ud800", "a\x00b", "line\nbreak", "a/b", "..", "@me",
                                  "", "x" * 129])
def test_agent_names_that_cannot_be_journaled_or_shown_are_refused(
        tmp_path: Path, name: str) -> None:
    with wb.Run(seed=1, journal=tmp_path / "j.wbj") as run:
        with pytest.raises(wb.ConfigError, match="agent names are 1-128 printable"):
            run.add_agent(name, tick, state=0)
        run.add_agent("ok name-é", tick, state=0)  # the run still works
        assert run.step() is not None


def test_a_bad_state_or_payload_names_the_agent_and_the_spot(tmp_path: Path) -> None:
    with wb.Run(seed=1, journal=tmp_path / "j.wbj") as run:
        with pytest.raises(wb.ConfigError,
                           match=r"add_agent\('a', state=...\): state\[\"items\"\]\[3\] is a "
                                 r"set, not JSON"):
            run.add_agent("a", tick, state={"items": [0, 1, 2, {3}]})
        run.add_agent("a", tick, state=0)
        with pytest.raises(wb.ConfigError,
                           match=r"run.send\('a', payload\): payload\[\"t\"\] has a lone "
                                 r"surrogate \(U\+D800\) at character 3"):
            run.send("a", {"t": "bad\ud800"})
        assert run.step() is not None  # nothing was journaled by the refused calls


def test_an_output_that_is_not_json_is_a_fault_naming_the_spot(tmp_path: Path) -> None:
    def bad(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        return {"state": {"ok": 1}, "outbox": [("a", {"x": [1, {"s": {1}}]})]}

    with wb.Run(seed=1, journal=tmp_path / "j.wbj") as run:
        run.add_agent("a", bad, state=0)
        report = run.step()
    assert report is not None
    fault = report.faults["a"]
    assert fault.kind == "malformed_output"
    assert fault.detail.startswith('outbox[0].payload["x"][1]["s"] is a set, not JSON')

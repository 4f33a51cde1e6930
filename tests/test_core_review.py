"""Regression tests for defects found in the runtime core (run, scheduler, replay, journal)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import tiny_model

import workbench as wb
from workbench.testing import FakeEngine

__all__ = ["tiny_model"]

AGENTS = Path(__file__).resolve().parent.parent / "examples" / "agents"


def counter(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    return {"state": state + 1, "outbox": [], "status": "ready"}


def fails_at_two(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    if state >= 2:
        raise RuntimeError("boom")
    return {"state": state + 1, "outbox": [], "status": "ready"}


def test_a_background_error_does_not_leave_the_run_busy(tmp_path: Path) -> None:
    with wb.Run(seed=1, policy="parallel", journal=tmp_path / "j.wbj") as run:
        run.add_agent("c", fails_at_two, state=0, on_fault="fail")
        run.start()
        with pytest.raises(wb.AgentFault):
            run.wait(10)
        assert not run.running
        run.rewind(0)  # the run is usable again after the error was reported
        assert run.step_index == 1


def test_replay_goes_past_a_committed_fail_policy_fault(tmp_path: Path) -> None:
    path = tmp_path / "j.wbj"
    with wb.Run(seed=1, policy="round_robin", journal=path) as run:
        run.add_agent("c", fails_at_two, state=0, on_fault="fail")
        run.add_agent("d", counter, state=0)
        with pytest.raises(wb.AgentFault):
            run.run(6)
        run.run(2)  # the faulted step was committed; the others go on
    report = wb.replay(path, agents={"c": fails_at_two, "d": counter})
    assert report.steps == 7


def test_rewind_before_a_forks_first_step_is_refused(tmp_path: Path) -> None:
    with wb.Run(seed=1, policy="parallel", journal=tmp_path / "a.wbj") as run:
        run.add_agent("c", counter, state=0)
        run.run(6)
        child = run.fork(at=3, journal=tmp_path / "b.wbj")
        with child:
            child.run(2)
            with pytest.raises(wb.ConfigError, match="fork"):
                child.rewind(1)
            with pytest.raises(wb.ConfigError, match="fork"):
                child.fork(at=1, journal=tmp_path / "c.wbj")
            child.rewind(3)  # the fork point itself is fine
            assert (child.step_index, child.state_of("c")) == (4, 4)
            child.rewind(-1)  # so is "before this journal's first step"
            assert (child.step_index, child.state_of("c")) == (4, 4)


def test_a_fork_into_another_folder_can_be_replayed(tmp_path: Path) -> None:
    parent = tmp_path / "parent" / "j.wbj"
    child_path = tmp_path / "child" / "j.wbj"
    with wb.Run(seed=3, policy="parallel", journal=parent, workers=0) as run:
        run.add_agent("count", AGENTS / "counter.wat", capabilities=["random", "now", "log"])
        run.connect("count", "count")
        run.run(3)
        with run.fork(at=1, journal=child_path) as child:
            child.run(2)
    assert wb.replay(child_path).steps == 2


def test_the_journal_corrupt_advice_works(tmp_path: Path) -> None:
    path = tmp_path / "j.wbj"
    with wb.Run(seed=1, policy="parallel", journal=path) as run:
        run.add_agent("c", counter, state=0)
        run.run(3)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # damage the last record (not a torn tail)
    path.write_bytes(bytes(data))
    with pytest.raises(wb.JournalCorrupt) as info:
        wb.read_journal(path)
    intact = wb.read_journal(path, upto=info.value.offset)
    assert intact.records[-1]["k"] == "agent" and intact.end == info.value.offset


def test_rewind_to_the_start_keeps_the_engines_load_warnings(tmp_path: Path) -> None:
    path = tmp_path / "j.wbj"
    with wb.Run(seed=1, policy="parallel", journal=path) as run:
        run.add_agent("c", counter, state=0)
        # what the engine reports while loading, before the run's first step
        run._engine_event("provider_fallback", {"failed": "CUDAExecutionProvider",
                                                "next": "CPUExecutionProvider", "when": "load"})
        run.run(3)
        original = path.read_bytes()
        run.rewind(-1)
        assert [r["k"] for r in run.journal.read()] == ["run", "warn"]
        run.run(3)
        assert path.read_bytes() == original


def asks(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    host.infer({"prompt": f"question {state}", "max_tokens": 2})
    return {"state": state + 1, "outbox": [], "status": "ready"}


def test_infer_without_a_model_is_a_fault_that_replays(tmp_path: Path) -> None:
    path = tmp_path / "j.wbj"
    with wb.Run(seed=1, policy="parallel", journal=path) as run:
        run.add_agent("a", asks, state=0)
        report = run.step()
        assert report is not None and "Run(model=...)" in report.faults["a"].detail
    assert wb.replay(path, agents={"a": asks}).steps == 1


def _record_asks(path: Path) -> None:
    with wb.Run(seed=1, policy="parallel", model=FakeEngine(), journal=path) as run:
        run.add_agent("a", asks, state=0)
        run.add_agent("b", counter, state=0)
        run.run(3)


def asks_twice_at_one(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    host.infer({"prompt": f"question {state}", "max_tokens": 2})
    if state == 1:
        host.infer({"prompt": "and another", "max_tokens": 2})
    return {"state": state + 1, "outbox": [], "status": "ready"}


def asks_not_at_one(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    if state != 1:
        host.infer({"prompt": f"question {state}", "max_tokens": 2})
    return {"state": state + 1, "outbox": [], "status": "ready"}


@pytest.mark.parametrize(("changed", "expected", "got"), [
    (asks_twice_at_one, "no host call 1", "infer"),
    (asks_not_at_one, "host call 0: infer", "no more host calls"),
])
def test_replay_names_a_changed_number_of_host_calls(tmp_path: Path, changed: Any,
                                                     expected: str, got: str) -> None:
    _record_asks(tmp_path / "j.wbj")
    with pytest.raises(wb.NondeterminismError) as info:
        wb.replay(tmp_path / "j.wbj", agents={"a": changed, "b": counter})
    error = info.value
    assert (error.step, error.agent, error.field) == (1, "a", "calls")
    assert (error.expected, error.got) == (expected, got)
    assert "NondeterminismError" not in str(error)  # not nested inside a fault


def random_then_asks_at_one(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    if state == 1:
        host.random()
    host.infer({"prompt": f"question {state}", "max_tokens": 2})
    return {"state": state + 1, "outbox": [], "status": "ready"}


def test_replay_names_the_first_differing_host_call(tmp_path: Path) -> None:
    _record_asks(tmp_path / "j.wbj")
    with pytest.raises(wb.NondeterminismError) as info:
        wb.replay(tmp_path / "j.wbj", agents={"a": random_then_asks_at_one, "b": counter})
    error = info.value
    assert (error.step, error.agent, error.field) == (1, "a", "fn")
    assert (error.expected, error.got) == ("infer", "random")


class _DiskFullOnce:
    """A journal file whose next write stores half the bytes, then fails (disk full)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.failed = False

    def write(self, data: bytes) -> int:
        if self.failed:
            return int(self._inner.write(data))
        self.failed = True
        self._inner.write(data[: len(data) // 2])
        self._inner.flush()
        raise OSError(28, "No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_failed_journal_write_leaves_no_garbage_and_the_run_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "j.wbj"
    with wb.Run(seed=1, policy="parallel", journal=path) as run:
        run.add_agent("c", counter, state=0)
        run.run(2)
        writer = run._writer
        assert writer is not None
        writer._file = _DiskFullOnce(writer._file)  # type: ignore[assignment]
        with pytest.raises(OSError, match="step again"):
            run.step()
        assert run.step_index == 2 and run.state_of("c") == 2  # nothing committed
        assert wb.read_journal(path).torn_bytes == 0
        run.run(2)  # space was freed: the same step runs again
    assert wb.replay(path, agents={"c": counter}).steps == 4


def bad_request(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    host.infer({"prompt": "hi", "max_tokens": 0})  # refused: max_tokens must be >= 1
    return {"state": state, "outbox": [], "status": "done"}


def test_a_fault_from_a_host_call_points_at_the_agents_line(tmp_path: Path) -> None:
    import inspect

    line = inspect.getsourcelines(bad_request)[1] + 1
    with wb.Run(seed=1, policy="parallel", model=FakeEngine(), journal=tmp_path / "j") as run:
        run.add_agent("a", bad_request)
        report = run.step()
    assert report is not None
    # journaled: it must not depend on the workbench's own source lines
    assert report.faults["a"].data["where"] == f"bad_request line {line}"


def test_two_runs_with_the_same_seed_get_their_own_journals(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with wb.Run(seed=7, policy="parallel") as first, wb.Run(seed=7, policy="round_robin") as second:
        assert first.journal.path != second.journal.path
        for run in (first, second):
            run.add_agent("c", counter, state=0)
        first.step()
        second.run(3)
        first.step()
    assert len(wb.read_journal(first.journal.path).records) == 1 + 2 * 3  # header, 2 steps


def test_run_busy_says_what_to_do_when_paused(tmp_path: Path) -> None:
    with wb.Run(seed=1, policy="parallel", journal=tmp_path / "j.wbj") as run:
        run.add_agent("c", counter, state=0)
        gate = threading.Event()
        run.start(50, until=lambda r: not gate.wait(30))  # holds after the first step
        with pytest.raises(TimeoutError):
            run.pause(timeout=0)  # asks for a pause without waiting for it
        gate.set()
        run.pause()
        run.rewind(0)  # allowed while paused at a boundary
        assert run.step_index == 1
        with pytest.raises(wb.RunBusy) as info:
            run.start()
        assert "pause()" not in str(info.value) and "resume()" in str(info.value)
        run.resume()
        assert run.wait(30) is not None


class _FailingEngine(FakeEngine):
    """Fails every batch, each time with a new message."""

    def infer_batch(self, requests: Any, on_token: Any = None) -> Any:
        self.batches.append([r.agent for r in requests])
        raise RuntimeError(f"device lost (batch {len(self.batches)})")


def test_after_an_engine_failure_the_rest_of_the_batch_is_not_sent(tmp_path: Path) -> None:
    engine = _FailingEngine()
    with wb.Run(seed=1, policy="parallel", model=engine, journal=tmp_path / "j.wbj",
                max_batch=1) as run:
        for name in "abc":
            run.add_agent(name, asks, state=0)
        with pytest.raises(RuntimeError, match=r"batch 1\)"):
            run.step()
        assert engine.batches == [["a"]]
        assert run.step_index == 0 and [run.state_of(n) for n in "abc"] == [0, 0, 0]


def test_asking_about_an_unknown_agent_says_which_agents_exist(tmp_path: Path) -> None:
    with wb.Run(seed=1, policy="parallel", journal=tmp_path / "j.wbj") as run:
        run.add_agent("c", counter, state=0)
        for started in (False, True):
            with pytest.raises(wb.ConfigError, match=r"no agent named 'cc'.*\['c'\]"):
                run.state_of("cc")
            with pytest.raises(wb.ConfigError, match=r"no agent named 'cc'"):
                run.status_of("cc")
            if not started:
                run.step()


def test_a_fork_cannot_overwrite_its_parents_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.wbj"
    with wb.Run(seed=1, policy="parallel", journal=path) as run:
        run.add_agent("c", counter, state=0)
        run.run(3)
        before = path.read_bytes()
        with pytest.raises(wb.ConfigError, match="journal"):
            run.fork(at=1, journal=tmp_path / "." / "j.wbj")
        assert path.read_bytes() == before


def nan_request(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    host.infer({"prompt": "hi", "max_tokens": float("nan")})
    return {"state": state, "outbox": [], "status": "done"}


def set_request(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    host.infer({"prompt": {"not", "a", "string"}})
    return {"state": state, "outbox": [], "status": "done"}


def odd_log(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    host.log("half a pair: \ud800")
    return {"state": state + 1, "outbox": [], "status": "ready"}


def odd_error(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    raise RuntimeError("half a pair: \ud800")


@pytest.mark.parametrize("agent", [nan_request, set_request, odd_log, odd_error])
def test_non_json_host_call_arguments_do_not_stop_the_run(tmp_path: Path, agent: Any) -> None:
    path = tmp_path / "j.wbj"
    with wb.Run(seed=1, policy="parallel", model=FakeEngine(), journal=path) as run:
        run.add_agent("a", agent, state=0)
        run.add_agent("b", counter, state=0)
        run.run(2)  # a fault at most, never an error that stops every step
        assert run.step_index == 2 and run.state_of("b") == 2
    assert wb.replay(path, agents={"a": agent, "b": counter}).steps == 2


def test_an_odd_error_message_keeps_where_it_was_raised(tmp_path: Path) -> None:
    with wb.Run(seed=1, policy="parallel", journal=tmp_path / "j.wbj") as run:
        run.add_agent("a", odd_error, state=0)
        run.step()
    record = next(r for r in wb.read_journal(tmp_path / "j.wbj") if r["k"] == "agent")
    assert record["fault"]["detail"] == "RuntimeError: half a pair: \\ud800"
    assert record["fault"]["data"]["where"].startswith("odd_error line ")


def test_closing_runs_unloads_their_agents_from_a_shared_pool(tmp_path: Path) -> None:
    with wb.WorkerPool(1) as pool:
        with wb.Run(seed=3, policy="parallel", journal=tmp_path / "a" / "j.wbj",
                    workers=pool) as run:
            run.add_agent("count", AGENTS / "counter.wat", capabilities=["random", "now", "log"])
            run.connect("count", "count")
            run.run(2)
            with run.fork(at=0, journal=tmp_path / "b" / "j.wbj") as child:
                child.run(2)
                assert pool.agents == 2
            run.step()  # the parent's agent outlives its fork's
            assert pool.agents == 1
        assert pool.agents == 0 and not pool.closed  # the pool stays its owner's


def test_an_engine_the_run_loaded_is_closed_with_the_last_run_using_it(
        tmp_path: Path, tiny_model: Any) -> None:
    with wb.Run(seed=1, policy="parallel", model=tiny_model, journal=tmp_path / "a.wbj",
                engine_options={"threads": 1}) as run:
        run.add_agent("a", asks, state=0)
        run.step()
        engine = run.engine
        child = run.fork(journal=tmp_path / "b.wbj")
    child.step()  # the fork still uses the engine its parent loaded
    child.close()
    with pytest.raises(wb.errors.RunClosed):
        engine.generate("hi", max_tokens=1)  # type: ignore[attr-defined]
    given = FakeEngine()
    with wb.Run(seed=1, model=given, journal=tmp_path / "c.wbj") as run:
        run.add_agent("a", asks, state=0)
        run.step()
    assert given.infer_batch([], None) == []  # an engine the caller passed stays theirs


def test_a_fork_of_a_forks_start_records_the_real_step(tmp_path: Path) -> None:
    with wb.Run(seed=1, policy="parallel", journal=tmp_path / "a.wbj") as run:
        run.add_agent("c", counter, state=0)
        run.run(6)
        with run.fork(at=3, journal=tmp_path / "b.wbj") as child:
            child.run(1)
            with child.fork(at=-1, journal=tmp_path / "c.wbj") as grandchild:
                assert grandchild.journal.read().records[0]["parent"]["step"] == 3
                assert (grandchild.step_index, grandchild.state_of("c")) == (4, 4)
                with pytest.raises(wb.ConfigError, match="fork"):
                    grandchild.rewind(1)


def test_a_zero_filled_tail_is_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "j.wbj"
    with wb.Run(seed=1, policy="parallel", journal=path) as run:
        run.add_agent("c", counter, state=0)
        run.run(3)
    intact = wb.read_journal(path)
    with path.open("ab") as f:  # a crash after the file grew, before its blocks were written
        f.write(bytes(100))
    journal = wb.read_journal(path)
    assert journal.records == intact.records and journal.torn_bytes == 100
    assert wb.replay(path, agents={"c": counter}).steps == 3
    data = bytearray(path.read_bytes())
    data[-1] = 1  # not all zeros: damage, not a torn tail
    path.write_bytes(bytes(data))
    with pytest.raises(wb.JournalCorrupt):
        wb.read_journal(path)


def test_infer_from_two_threads_of_one_agent_is_refused_not_a_deadlock(tmp_path: Path) -> None:

    entered, release = threading.Event(), threading.Event()
    refused: list[BaseException] = []

    class HeldEngine(FakeEngine):
        def infer_batch(self, requests: Any, on_token: Any = None) -> Any:
            entered.set()
            release.wait(10)
            return super().infer_batch(requests, on_token)

    def two_threads(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        def second() -> None:
            entered.wait(10)  # the first request is in the engine
            try:
                host.infer({"prompt": "two", "max_tokens": 1})
            except RuntimeError as exc:
                refused.append(exc)
            release.set()

        helper = threading.Thread(target=second)
        helper.start()
        host.infer({"prompt": "one", "max_tokens": 1})
        helper.join()
        return {"state": state, "outbox": [], "status": "done"}

    run = wb.Run(seed=1, policy="parallel", model=HeldEngine(), journal=tmp_path / "j.wbj")
    run.add_agent("a", two_threads, state=0)
    driver = threading.Thread(target=run.step, daemon=True)
    driver.start()
    driver.join(30)
    assert not driver.is_alive(), "the step deadlocked in the inference barrier"
    run.close()
    assert len(refused) == 1 and "one thread at a time" in str(refused[0])


def test_jitter_injected_after_the_first_send_still_applies(tmp_path: Path) -> None:
    from workbench.testing import inject_jitter

    seen: list[str] = []

    def who(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        seen.append(type(host._host).__name__)  # inside the timeout_s bound's timed host
        return {"state": state, "outbox": [], "status": "idle"}

    with wb.Run(seed=1, policy="parallel", journal=tmp_path / "j.wbj") as run:
        run.add_agent("a", who, state=0)
        run.send("a", "hello")  # this starts the run
        inject_jitter(run, seed=3, max_delay=0.0)
        run.step()
    assert seen == ["_JitterHost"]


def huge_error(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    raise ValueError("x" * (17 * 1024 * 1024))


def huge_prompt(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    host.infer({"prompt": "x" * (17 * 1024 * 1024), "max_tokens": 1})
    return {"state": state, "outbox": [], "status": "done"}


@pytest.mark.parametrize("agent", [huge_error, huge_prompt])
def test_a_huge_error_or_prompt_is_a_fault_not_a_stuck_run(tmp_path: Path, agent: Any) -> None:
    with wb.Run(seed=1, policy="parallel", model=FakeEngine(), journal=tmp_path / "j") as run:
        run.add_agent("a", agent, state=0)
        report = run.step()
        assert report is not None and report.faults["a"].kind == "fault"
    record = next(r for r in wb.read_journal(tmp_path / "j") if r["k"] == "agent")
    assert len(record["fault"]["detail"]) < 20_000


def test_record_too_large_gives_advice_that_exists(tmp_path: Path) -> None:
    import inspect

    from workbench._journal import JournalWriter

    with JournalWriter(tmp_path / "j", max_record_bytes=100) as writer, \
            pytest.raises(wb.errors.RecordTooLarge) as info:
        writer.stage({"k": "agent", "state": "x" * 200})
    assert "max_record_bytes" not in inspect.signature(wb.Run).parameters
    assert "Run(max_record_bytes" not in str(info.value)
    assert "max_state_bytes" in str(info.value)


def test_limits_the_journal_cannot_hold_are_refused_when_the_agent_is_added(
        tmp_path: Path) -> None:
    with wb.Run(seed=1, policy="parallel", journal=tmp_path / "j") as run:
        with pytest.raises(wb.ConfigError, match="max_state_bytes"):
            run.add_agent("a", counter, limits=wb.Limits(max_state_bytes=64 * 1024 * 1024))
        run.add_agent("a", counter, state=0, limits=wb.Limits(max_state_bytes=8 * 1024 * 1024))

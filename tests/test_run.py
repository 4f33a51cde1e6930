"""Run semantics: policies, delivery, faults, limits, driving, rewind/fork, events."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from tests.scenarios import build
from workbench.testing import FakeEngine


def echo(state: Any, inbox: list[dict[str, Any]], host: Any) -> dict[str, Any]:
    seen = state + [[m["from"], m["seq"], m["step"], m["payload"]] for m in inbox]
    return {"state": seen, "outbox": [], "status": "idle"}


def sender(targets: list[str], count: int) -> Any:
    def agent(state: Any, inbox: list[dict[str, Any]], host: Any) -> dict[str, Any]:
        out = [(t, {"i": i}) for i in range(count) for t in targets]
        return {"state": state, "outbox": out, "status": "done"}

    return agent


def make(tmp_path: Path, policy: Any = "parallel", **kw: Any) -> wb.Run:
    return wb.Run(seed=1, policy=policy, journal=tmp_path / "j.wbj", **kw)


def test_messages_arrive_next_step_in_sender_then_sequence_order(tmp_path: Path) -> None:
    with make(tmp_path) as run:
        run.add_agent("z", sender(["sink"], 2), state=None)
        run.add_agent("a", sender(["sink"], 2), state=None)
        run.add_agent("sink", echo, state=[])
        run.connect("z", "sink")
        run.connect("a", "sink")
        run.send("sink", "hello")
        run.step()  # sink gets the user message; z and a send
        assert run.state_of("sink") == [["@user", 0, -1, "hello"]]
        run.step()
        # agent order is the order of add_agent: z before a
        assert run.state_of("sink")[1:] == [["z", 0, 0, {"i": 0}], ["z", 1, 0, {"i": 1}],
                                            ["a", 0, 0, {"i": 0}], ["a", 1, 0, {"i": 1}]]


def test_round_robin_takes_turns_and_skips_idle_agents(tmp_path: Path) -> None:
    order: list[str] = []

    def turn(name: str, status: str) -> Any:
        def agent(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
            order.append(name)
            return {"state": state, "outbox": [], "status": status}
        return agent

    with make(tmp_path, "round_robin") as run:
        run.add_agent("a", turn("a", "ready"))
        run.add_agent("b", turn("b", "idle"))
        run.add_agent("c", turn("c", "ready"))
        run.run(5)
    assert order == ["a", "b", "c", "a", "c"]


def test_dag_runs_a_node_when_its_upstream_produced(tmp_path: Path) -> None:
    ran: list[tuple[int, str]] = []

    def node(name: str, emit: list[str]) -> Any:
        def agent(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
            ran.append((host.now() // 1_000_000_000, name))
            return {"state": state, "outbox": [(t, name) for t in emit], "status": "idle"}
        return agent

    dag = wb.DAG({"plan": ["write", "check"], "write": ["check"]})
    with make(tmp_path, dag) as run:
        run.add_agent("plan", node("plan", ["write", "check"]))
        run.add_agent("write", node("write", ["check"]))
        run.add_agent("check", node("check", []))
        summary = run.run()
    # write and check run concurrently in step 1: their order here is completion order
    assert sorted(ran) == [(0, "plan"), (1, "check"), (1, "write"), (2, "check")]
    assert summary.reason == "quiescent"


def test_dag_rejects_cycles_unless_declared_feedback() -> None:
    with pytest.raises(wb.ConfigError, match=r"cycle .*feedback"):
        wb.DAG({"a": ["b"], "b": ["a"]})
    wb.DAG({"a": ["b"]}, feedback=[("b", "a")])


def test_dag_must_name_added_agents(tmp_path: Path) -> None:
    with make(tmp_path, wb.DAG({"a": ["ghost"]})) as run:
        run.add_agent("a", echo, state=[])
        with pytest.raises(wb.ConfigError, match="ghost"):
            run.step()


def test_sending_without_a_channel_is_a_journaled_fault(tmp_path: Path) -> None:
    with make(tmp_path) as run:
        run.add_agent("a", sender(["b"], 1))
        run.add_agent("b", echo, state=[])
        report = run.step()
        assert report is not None
        fault = report.faults["a"]
        assert fault.kind == "malformed_output" and "run.connect('a', 'b')" in fault.detail
        assert run.status_of("a") == "faulted"
    faults = [r for r in wb.read_journal(tmp_path / "j.wbj") if r["k"] == "agent"]
    assert faults[0]["fault"]["kind"] == "malformed_output"


def crashy(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    if state >= 2:
        raise RuntimeError("boom")
    return {"state": state + 1, "outbox": [], "status": "ready"}


@pytest.mark.parametrize("policy", ["continue", "restart", "fail"])
def test_fault_policies(tmp_path: Path, policy: Any) -> None:
    with make(tmp_path) as run:
        run.add_agent("c", crashy, state=0, on_fault=policy)
        run.step()
        run.step()
        if policy == "fail":
            with pytest.raises(wb.AgentFault, match="boom") as info:
                run.step()
            assert (info.value.agent, info.value.step) == ("c", 2)
            assert run.step_index == 3  # the faulted step was still committed
        else:
            report = run.step()
            assert report is not None and "boom" in report.faults["c"].detail
        if policy == "restart":
            assert (run.state_of("c"), run.status_of("c")) == (0, "ready")
        else:
            assert (run.state_of("c"), run.status_of("c")) == (2, "faulted")


def test_state_and_message_limits_are_faults(tmp_path: Path) -> None:
    def big(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        return {"state": "x" * 200, "outbox": [], "status": "ready"}

    def chatty(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        return {"state": 0, "outbox": [("big", i) for i in range(5)], "status": "ready"}

    def nan(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        return {"state": float("nan"), "outbox": [], "status": "ready"}

    with make(tmp_path) as run:
        run.add_agent("big", big, limits=wb.Limits(max_state_bytes=100))
        run.add_agent("chatty", chatty, limits=wb.Limits(max_messages=4))
        run.add_agent("nan", nan)
        run.connect("chatty", "big")
        report = run.step()
    assert report is not None
    assert {k: f.kind for k, f in report.faults.items()} == {
        "big": "limit", "chatty": "limit", "nan": "malformed_output"}
    assert report.faults["big"].data == {"limit": "max_state_bytes", "value": 202, "max": 100}
    assert report.faults["chatty"].data == {"limit": "max_messages", "value": 5, "max": 4}


def test_ungranted_host_call_is_refused(tmp_path: Path) -> None:
    def greedy(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        host.infer({"prompt": "hi"})
        return {"state": state, "outbox": [], "status": "done"}

    with make(tmp_path, model=FakeEngine()) as run:
        run.add_agent("g", greedy, capabilities=["log"])
        report = run.step()
    assert report is not None and "CapabilityError" in report.faults["g"].detail


def test_bad_infer_request_reaches_the_agent_as_value_error(tmp_path: Path) -> None:
    def asker(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        try:
            host.infer({"prompt": "hi", "max_tokens": -1})
        except ValueError as exc:
            return {"state": str(exc), "outbox": [], "status": "done"}
        return {"state": "accepted", "outbox": [], "status": "done"}

    with make(tmp_path, model=FakeEngine()) as run:
        run.add_agent("q", asker)
        run.step()
        assert "max_tokens" in run.state_of("q")


def test_token_budget_per_run(tmp_path: Path) -> None:
    def asker(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        reply = host.infer({"prompt": "hi", "max_tokens": 4})
        return {"state": [*state, len(reply["tokens"])], "outbox": [], "status": "ready"}

    with make(tmp_path, model=FakeEngine()) as run:
        run.add_agent("q", asker, state=[], limits=wb.Limits(max_tokens_per_run=10))
        run.run(4)
        assert run.state_of("q") == [4, 4, 2, 0]


def ticker(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    return {"state": state + host.random() % 7, "outbox": [], "status": "ready"}


def tickers(path: Path) -> wb.Run:
    run = wb.Run(seed=3, policy="parallel", journal=path)
    for i in range(4):
        run.add_agent(f"t{i}", ticker, state=0)
    return run


def test_background_driving_writes_the_same_journal(tmp_path: Path) -> None:
    with tickers(tmp_path / "fg.wbj") as run:
        run.run(301)
    gate = threading.Event()

    def hold_after_first_step(run: wb.Run) -> bool:
        gate.wait(30)  # the driver waits here until the test has asked it to pause
        return False

    with tickers(tmp_path / "bg.wbj") as run:
        run.start(300, until=hold_after_first_step)
        with pytest.raises(TimeoutError):
            run.pause(timeout=0)  # asks for a pause without waiting for it
        gate.set()
        run.pause()
        assert run.step_index == 1 and not run.running
        run.step()  # paused at a boundary: the notebook's controls may step
        assert run.step_index == 2
        with pytest.raises(wb.RunBusy, match="resume"):
            run.wait(1)
        with pytest.raises(wb.RunBusy, match="resume"):
            run.start()
        run.resume()
        summary = run.wait(30)
        assert summary is not None and summary.steps == 300
    assert (tmp_path / "fg.wbj").read_bytes() == (tmp_path / "bg.wbj").read_bytes()


def test_background_errors_surface_in_wait(tmp_path: Path) -> None:
    with make(tmp_path) as run:
        run.add_agent("c", crashy, state=0, on_fault="fail")
        run.start()
        with pytest.raises(wb.AgentFault):
            run.wait(10)


def test_rewind_then_rerun_gives_the_same_journal(tmp_path: Path) -> None:
    with build(12, 5, tmp_path / "a.wbj") as run:
        run.run(40)
        original = (tmp_path / "a.wbj").read_bytes()
        state_at_10 = None
        run.rewind(10)
        assert run.step_index == 11
        state_at_10 = [run.state_of(a) for a in run.agents]
        run.run(40 - 11)
        assert (tmp_path / "a.wbj").read_bytes() == original
        run.rewind(10)
        assert [run.state_of(a) for a in run.agents] == state_at_10


def test_fork_records_its_parent_and_continues_identically(tmp_path: Path) -> None:
    with build(12, 5, tmp_path / "a.wbj") as run:
        run.run(40)
        child = run.fork(at=20, journal=tmp_path / "fork.wbj")
        header = child.journal.read().records[0]
        assert header["parent"]["journal"] == str(tmp_path / "a.wbj")
        assert header["parent"]["step"] == 20
        child.run(19)
        ours = [r for r in run.journal.read() if r["k"] in ("agent", "call") and r["t"] > 20]
        theirs = [r for r in child.journal.read() if r["k"] in ("agent", "call")]
        assert ours == theirs
        child.close()


def test_fork_can_replace_an_agent(tmp_path: Path) -> None:
    with make(tmp_path, "round_robin") as run:
        run.add_agent("a", crashy, state=0)
        run.run(2)
        child = run.fork(journal=tmp_path / "f.wbj",
                         agents={"a": lambda s, i, h: {"state": s + 10, "status": "done"}})
        child.step()
        assert child.state_of("a") == 12
        child.close()


def test_adding_agents_after_start_is_refused(tmp_path: Path) -> None:
    with make(tmp_path) as run:
        run.add_agent("a", echo, state=[])
        run.step()
        with pytest.raises(wb.ConfigError, match="fork"):
            run.add_agent("b", echo, state=[])


def test_closed_run_refuses_work(tmp_path: Path) -> None:
    run = make(tmp_path)
    run.add_agent("a", echo, state=[])
    run.close()
    run.close()
    with pytest.raises(ValueError, match="closed"):
        run.step()
    assert "closed" in repr(run)


def test_queue_limit_is_a_journaled_fault(tmp_path: Path) -> None:
    def flood(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        return {"state": state + 3, "outbox": [("sink", state + i) for i in range(3)],
                "status": "ready"}

    with make(tmp_path, "round_robin") as run:
        run.add_agent("flood", flood, state=0)
        run.add_agent("other", flood, state=100)
        run.add_agent("sink", echo, state=[], limits=wb.Limits(max_queued=5))
        run.connect("flood", "sink")
        run.connect("other", "sink")
        run.step()  # flood: 3 queued
        report = run.step()  # other: 3 more would make 6 > 5
        assert report is not None and report.faults["other"].kind == "limit"
        assert "max_queued is 5" in report.faults["other"].detail
        assert report.faults["other"].data == {"limit": "max_queued", "value": 6, "max": 5,
                                               "to": "sink"}
        run.step()  # sink gets what was accepted, nothing lost
        assert [entry[3] for entry in run.state_of("sink")] == [0, 1, 2]


def test_bad_limits_are_refused(tmp_path: Path) -> None:
    with make(tmp_path) as run:
        with pytest.raises(wb.ConfigError, match="max_messages=0"):
            run.add_agent("a", echo, state=[], limits=wb.Limits(max_messages=0))
        with pytest.raises(wb.ConfigError, match="timeout_s"):
            run.add_agent("a", echo, state=[], limits=wb.Limits(timeout_s=0))


def test_user_sends_respect_the_queue_bound(tmp_path: Path) -> None:
    with make(tmp_path) as run:
        run.add_agent("a", echo, state=[], limits=wb.Limits(max_queued=2))
        run.send("a", 1)
        run.send("a", 2)
        with pytest.raises(wb.ConfigError, match="max_queued is 2"):
            run.send("a", 3)
        run.step()
        run.send("a", 3)
        assert [m[3] for m in run.state_of("a")] == [1, 2]


def test_until_that_already_holds_runs_no_step(tmp_path: Path) -> None:
    with make(tmp_path) as run:
        run.add_agent("a", echo, state=[])
        summary = run.until(lambda r: True)
        assert (summary.steps, summary.reason, run.step_index) == (0, "until", 0)

"""The kernel side of the views: the view document (from a journal and live), the RunView
widget's deltas, its bounds, and the requests it takes from an untrusted front end."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
import workbench._viewdoc as viewdoc
from tests.pool_agents import CAPS, counter_wasm
from workbench._journal import read_journal
from workbench._records import AgentResult, Commit, RunHeader
from workbench._viewdoc import ViewDoc, doc_from_journal
from workbench._widget import MAX_DELTAS_PER_S, RunView
from workbench.testing import FakeEngine

GOLDEN = Path(__file__).parent / "golden"


def talker(state: Any, inbox: Any, host: Any) -> Any:
    reply = host.infer({"messages": [{"role": "user", "content": f"turn {state['n']}"}],
                        "max_tokens": 4})
    n = state["n"] + 1
    return {"state": {"n": n}, "outbox": [("echo", {"n": n, "text": reply["text"]})],
            "status": "ready" if n < 6 else "done"}


def echo(state: Any, inbox: Any, host: Any) -> Any:
    host.log(f"got {len(inbox)}")
    return {"state": state + len(inbox), "status": "idle"}


def team(path: Path, **kwargs: Any) -> wb.Run:
    run = wb.Run(seed=5, policy="parallel", journal=path, workers=0, model=FakeEngine(),
                 **kwargs)
    run.add_agent("talker", talker, state={"n": 0}, capabilities=["infer"])
    run.add_agent("echo", echo, state=0, capabilities=["log"])
    run.add_agent("counter", counter_wasm(), capabilities=CAPS, state=1)
    run.connect("talker", "echo")
    return run


class Recorder:
    """Stands in for the front end: keeps what the view sends."""

    def __init__(self, view: RunView) -> None:
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        view.send = self.send  # type: ignore[method-assign]

    def send(self, msg: dict[str, Any], buffers: Any = None) -> None:
        with self.lock:
            self.messages.append(json.loads(json.dumps(msg)))  # as it goes over the wire

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if m["type"] == kind]


def without_measures(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Steps without what only a live run measures (wall-clock time, fuel, memory)."""
    out = []
    for s in steps:
        results = {a: {k: v for k, v in r.items() if k not in ("fuel", "memory")}
                   for a, r in s["results"].items()}
        out.append({**s, "time": None, "results": results})
    return out


@pytest.mark.parametrize("name", ["python", "wasm", "fault", "parent"])
def test_a_journal_document_holds_what_the_journal_holds(name: str) -> None:
    journal = read_journal(GOLDEN / f"{name}.wbj")
    records = journal.typed
    doc = doc_from_journal(GOLDEN / f"{name}.wbj")
    assert doc["source"] == "journal" and doc["clock"] == "logical"
    header = records[0]
    assert isinstance(header, RunHeader)
    assert [a["name"] for a in doc["header"]["agents"]] == [a.name for a in header.agents]
    assert [a["kind"] for a in doc["header"]["agents"]] == [
        a.identity["kind"] for a in header.agents]
    assert [s["t"] for s in doc["steps"]] == [r.step for r in records if isinstance(r, Commit)]
    for r in records:
        if isinstance(r, AgentResult):
            shown = next(s for s in doc["steps"] if s["t"] == r.step)["results"][r.agent]
            assert shown["status"] == r.status
            assert shown["state"] == (None if r.fault else r.state) or r.fault is not None
            assert [m["to"] for m in shown["out"]] == [m.to for m in r.outbox]
            assert (shown["fault"] or {}).get("kind") == (r.fault or {}).get("kind")
    step_spans = [s for s in doc["spans"] if s["kind"] == "step"]
    assert len(step_spans) == sum(len(s["ran"]) for s in doc["steps"])
    assert doc["status"]["state"] == "finished"


def test_the_live_document_equals_the_journal_document_plus_measures(tmp_path: Path) -> None:
    run = team(tmp_path / "j.wbj")
    view = run.view()
    assert run.view() is view  # one per run
    run.start(12)
    run.wait(30)
    run.close()
    live = view.snapshot()
    rebuilt = doc_from_journal(tmp_path / "j.wbj")
    assert len(live["steps"]) == run.step_index > 6
    assert without_measures(live["steps"]) == without_measures(rebuilt["steps"])
    assert live["clock"] == "measured" and live["status"]["state"] == "closed"
    for step in live["steps"]:
        assert step["time"] is not None
        for agent, r in step["results"].items():
            if agent == "counter":  # WebAssembly: what the step used
                assert r["fuel"] > 0 and r["memory"] >= 65536
            else:
                assert r["fuel"] is None and r["memory"] is None
    kinds = {(s["lane"], s["kind"]) for s in live["spans"]}
    assert {("engine", "batch"), ("talker", "queue"), ("talker", "prefill"),
            ("talker", "decode"), ("echo", "step")} <= kinds
    assert live["header"]["engine"] is not None


def test_a_view_attached_late_shows_the_whole_run(tmp_path: Path) -> None:
    with team(tmp_path / "j.wbj") as run:
        run.run(4)
        view = run.view()
        assert [s["t"] for s in view.doc["steps"]] == [0, 1, 2, 3]  # saved at once
        doc = view.snapshot()
        assert [s["t"] for s in doc["steps"]] == [0, 1, 2, 3]
        # the run kept its timings, so the steps from before the view are measured too
        assert all(s["time"] is not None and s["time"] >= 0 for s in doc["steps"])
        assert {s["step"] for s in doc["spans"] if s["kind"] == "decode"} == {0, 1, 2, 3}


def test_deltas_are_numbered_coalesced_and_rebuild_the_document(tmp_path: Path) -> None:
    def tick(state: Any, inbox: Any, host: Any) -> Any:
        return {"state": state + 1, "outbox": [("sink", state)], "status": "ready"}

    run = wb.Run(seed=1, journal=tmp_path / "j.wbj", workers=0)
    run.add_agent("tick", tick, state=0)
    run.add_agent("sink", lambda s, i, h: {"state": s + len(i), "status": "idle"}, state=0)
    run.connect("tick", "sink")
    view = run.view()
    wire = Recorder(view)
    initial = json.loads(json.dumps(view.doc))  # what a front end finds first
    began = time.monotonic()
    run.run(400)
    deadline = time.monotonic() + 10
    while view.snapshot()["status"]["step"] < 399 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(3 / MAX_DELTAS_PER_S)
    elapsed = time.monotonic() - began
    run.close()
    view._flusher.join(5)  # type: ignore[union-attr]
    # what a front end rebuilds from the initial doc traitlet plus the messages
    steps: dict[int, Any] = {s["t"]: s for s in initial["steps"]}
    last = initial["seq"]
    for m in wire.messages:
        if m["type"] == "doc":
            steps = {s["t"]: s for s in m["doc"]["steps"]}
            last = m["doc"]["seq"]
        elif m["type"] == "delta":
            assert m["seq"] == last + 1  # no gap, no reordering
            last = m["seq"]
            steps.update({s["t"]: s for s in m["steps"]})
    assert sorted(steps) == list(range(400))
    assert [steps[t] for t in range(400)] == view.snapshot()["steps"]
    sent = len(wire.of("delta")) + len(wire.of("doc"))
    assert sent <= (elapsed + 1) * MAX_DELTAS_PER_S  # coalesced, not one per event
    assert view.doc["steps"] == view.snapshot()["steps"]  # the saved state is the final run


def test_ten_thousand_malformed_requests_escape_nothing(tmp_path: Path) -> None:
    with team(tmp_path / "j.wbj") as run:
        run.run(2)
        view = run.view()
        wire = Recorder(view)
        rng = random.Random(7)
        junk: list[Any] = [None, 3, "hello", [], [{"type": "hello"}], {"type": "HELLO"},
                           {"type": "hello", "id": -1}, {"type": "hello", "id": True},
                           {"type": "hello", "id": 2**60}, {"type": "control"},
                           {"type": "control", "action": "explode", "id": 1},
                           {"type": "rewind", "step": "1"}, {"type": "rewind", "step": 1.5},
                           {"type": "rewind", "step": -2}, {"type": "fork", "step": None},
                           {"type": "hello", "extra": 1}, {"type": ["hello"]},
                           {"type": "control", "action": {"a": 1}},
                           {"type": "rewind", "step": 2**80}]
        # every message below is invalid by construction: a bad type, a bad or missing
        # field for its type, or a field its type does not have
        bad_ids: list[Any] = [-1, True, 2**70, 1.5, float("nan"), "7", [], {}]
        bad_steps: list[Any] = [None, True, "1", 1.5, -2, 2**80, float("inf"), [1], {}]
        bad_actions: list[Any] = [None, "explode", "RUN", 1, ["run"], {"run": 1}, ""]
        junk_values: list[Any] = [None, 0, "x" * 10_000, "<script>", [], {"__proto__": 1}]
        for i in range(10_000 - len(junk)):
            kind = rng.choice(["hello", "control", "rewind", "fork", "delta", 7, None,
                               "HELLO", ""])
            msg: dict[str, Any] = {"type": kind}
            if rng.random() < 0.5 or kind == "hello":
                msg["id"] = rng.choice(bad_ids) if kind == "hello" else rng.choice(
                    [*bad_ids, None, i])
            if kind == "control" and rng.random() < 0.9:
                msg["action"] = rng.choice(bad_actions)
            if kind in ("rewind", "fork") and rng.random() < 0.9:
                msg["step"] = rng.choice(bad_steps)
            if rng.random() < 0.2:
                msg[rng.choice(["doc", "__class__", "", "steps", "Type"])] = rng.choice(
                    junk_values)
            junk.append(msg)
        for msg in junk:
            view._on_msg(view, msg, [])  # ipywidgets' handler signature
        replies = wire.of("reply")
        assert len(replies) == len(junk) and not any(r["ok"] for r in replies)
        assert all(isinstance(r["error"], str) and r["error"] for r in replies)
        assert view.request_errors == len(junk)
        assert run.step_index == 2 and run.activity == "idle"  # nothing happened to the run
        view._on_msg(view, {"type": "hello", "id": 99}, [])
        assert wire.messages[-1] == {"type": "reply", "id": 99, "ok": True, "error": None,
                                     "result": None}
        assert wire.messages[-2]["type"] == "doc"
        assert len(wire.messages[-2]["doc"]["steps"]) == 2


def _request(view: RunView, wire: Recorder, msg: dict[str, Any]) -> dict[str, Any]:
    view._on_msg(view, msg, [])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for m in wire.of("reply"):
            if m["id"] == msg["id"]:
                return m
        time.sleep(0.01)
    raise AssertionError(f"no reply to {msg}")


def test_the_controls_drive_the_run(tmp_path: Path) -> None:
    def slow(state: Any, inbox: Any, host: Any) -> Any:
        time.sleep(0.02)
        return {"state": state + 1, "status": "ready" if state < 40 else "done"}

    run = wb.Run(seed=2, journal=tmp_path / "j.wbj", workers=0)
    run.add_agent("slow", slow, state=0)
    view = run.view()
    wire = Recorder(view)
    assert _request(view, wire, {"type": "control", "id": 1, "action": "run"})["ok"]
    while run.step_index < 5:
        time.sleep(0.01)
    assert _request(view, wire, {"type": "control", "id": 2, "action": "pause"})["ok"]
    assert run.activity == "paused"
    paused_at = run.step_index
    time.sleep(0.1)
    assert run.step_index == paused_at < 41  # paused mid-way
    assert len(read_journal(tmp_path / "j.wbj").records) > 0
    refused = _request(view, wire, {"type": "control", "id": 3, "action": "pause"})
    assert not refused["ok"] and "paused" in refused["error"]
    stepped = _request(view, wire, {"type": "control", "id": 31, "action": "step"})
    assert stepped["result"] == {"step": paused_at} and run.activity == "paused"
    assert _request(view, wire, {"type": "control", "id": 4, "action": "run"})["ok"]
    busy = _request(view, wire, {"type": "control", "id": 41, "action": "step"})
    assert not busy["ok"] and "pause it first" in busy["error"]
    run.wait(30)
    assert run.step_index == 41
    rewound = _request(view, wire, {"type": "rewind", "id": 5, "step": 2})
    assert rewound["ok"] and run.step_index == 3
    deadline = time.monotonic() + 5
    while not any(len(m["doc"]["steps"]) == 3 for m in wire.of("doc")):
        assert time.monotonic() < deadline, "no document after the rewind"
        time.sleep(0.01)
    assert [s["t"] for s in view.snapshot()["steps"]] == [0, 1, 2]
    stepped = _request(view, wire, {"type": "control", "id": 6, "action": "step"})
    assert stepped == {"type": "reply", "id": 6, "ok": True, "error": None,
                       "result": {"step": 3}}
    forked = _request(view, wire, {"type": "fork", "id": 7, "step": 1})
    assert forked["ok"] and Path(forked["result"]["journal"]).exists()
    assert len(view.forks) == 1 and view.forks[0].step_index == 2
    bad = _request(view, wire, {"type": "rewind", "id": 8, "step": 99})
    assert not bad["ok"] and bad["error"]
    for child in view.forks:
        child.close()
    run.close()


def test_a_journal_view_refuses_controls(tmp_path: Path) -> None:
    view = wb.view(GOLDEN / "python.wbj")
    wire = Recorder(view)
    reply = _request(view, wire, {"type": "control", "id": 1, "action": "run"})
    assert not reply["ok"] and "journal" in reply["error"]
    assert view.doc["source"] == "journal" and len(view.doc["steps"]) == 8
    assert "8 steps" in repr(view)


def test_a_document_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(viewdoc, "MAX_DETAIL_BYTES", 200_000)
    monkeypatch.setattr(viewdoc, "MAX_STEPS", 150)
    monkeypatch.setattr(viewdoc, "MAX_SPANS", 100)

    def big(state: Any, inbox: Any, host: Any) -> Any:
        host.log("L" * 5_000)
        return {"state": {"n": state["n"] + 1, "blob": "x" * 10_000,
                          "huge": ["y" * 1_000] * (70 if state["n"] == 3 else 1)},
                "status": "ready"}

    with wb.Run(seed=1, journal=tmp_path / "j.wbj", workers=0) as run:
        run.add_agent("big", big, state={"n": 0}, capabilities=["log"])
        run.run(200)
    doc = doc_from_journal(tmp_path / "j.wbj")
    size = len(json.dumps(doc))
    assert size < 200_000 + 40_000  # the newest step keeps its details whatever its size
    assert len(doc["steps"]) == 150 and doc["trimmed"]["dropped_steps"] == 50
    assert doc["trimmed"]["steps"] > 0 and doc["trimmed"]["spans"] == 100
    assert len(doc["spans"]) == 100
    newest = doc["steps"][-1]["results"]["big"]
    assert newest["trimmed"] is True  # its 10,000-character string was cut
    assert len(newest["state"]["blob"]) < 2_100 and "more characters" in newest["state"]["blob"]
    assert len(newest["logs"][0]) < 2_100
    oldest = doc["steps"][0]["results"]["big"]
    assert oldest["state"] is None and oldest["trimmed"] and oldest["status"] == "ready"
    live = ViewDoc(None)
    value, cut = viewdoc._value({"a": "z" * 100_000})
    assert cut and isinstance(value, str) and "too large for the view" in value
    assert live.take_delta() is None  # nothing happened: nothing to send


def test_a_notebook_shows_a_run_as_its_views(tmp_path: Path) -> None:
    with team(tmp_path / "j.wbj") as run:
        bundle, _metadata = run._repr_mimebundle_()
        view = run.view()
        assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == view.model_id
        assert "RunView" in bundle["text/plain"]
    view._flusher.join(5)  # type: ignore[union-attr]
    assert not view._flusher.is_alive()  # type: ignore[union-attr]
    assert view.doc["status"]["state"] == "closed"

"""Exporters: wb.events_frame (pandas) and wb.export_trace (Chrome/Perfetto trace JSON).

The trace is checked by a strict schema check of the trace-event format written here from
its specification ("Trace Event Format", the JSON Object Format). PyPI ``perfetto``'s trace
processor was tried as a real parser: it downloads its ``trace_processor_shell`` binary on
first use, which fails offline, so the tests do not depend on it.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import tiny_model

import workbench as wb
from workbench._engine._model import ModelFiles
from workbench._events import BatchRan, Gap, StepAbandoned, StepRunning, TokenStreamed
from workbench._records import RunHeader

__all__ = ["tiny_model"]

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.wbj"))

# --- a strict check of the trace-event format ---------------------------------------------

PHASES = set("BEXiICbnestfPONDMRc()")  # every phase the format defines
EMITTED = {"X", "i", "M"}  # the ones export_trace writes
EVENT_KEYS = {"name", "cat", "ph", "ts", "tts", "pid", "tid", "args", "dur", "tdur", "s",
              "id", "bp", "cname", "sf", "stack", "esf", "estack"}
TOP_KEYS = {"traceEvents", "displayTimeUnit", "otherData", "systemTraceEvents",
            "stackFrames", "samples", "metadata", "controllerTraceDataKey"}
METADATA_ARG = {"process_name": ("name", str), "thread_name": ("name", str),
                "process_labels": ("labels", str),
                "process_sort_index": ("sort_index", int),
                "thread_sort_index": ("sort_index", int)}


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _no_constants(name: str) -> Any:
    raise AssertionError(f"{name} is not JSON")


def check_trace(path: Path) -> dict[str, Any]:
    """The trace at ``path``, after checking it against the format; AssertionError if not."""
    doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constants)
    assert isinstance(doc, dict) and set(doc) <= TOP_KEYS, set(doc) - TOP_KEYS
    assert doc.get("displayTimeUnit", "ms") in ("ms", "ns")
    assert isinstance(doc.get("otherData", {}), dict)
    events = doc["traceEvents"]
    assert isinstance(events, list) and events
    named: set[tuple[str, int, int]] = set()
    used: set[tuple[int, int]] = set()
    spans: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for e in events:
        where = f"event {e!r}"
        assert isinstance(e, dict) and set(e) <= EVENT_KEYS, where
        assert e.get("ph") in PHASES and e["ph"] in EMITTED, where
        assert isinstance(e.get("name"), str), where
        assert isinstance(e.get("pid"), int) and isinstance(e.get("tid"), int), where
        assert _number(e.get("ts")) and e["ts"] >= 0, where  # microseconds
        assert isinstance(e.get("args", {}), dict), where
        assert isinstance(e.get("cat", ""), str), where
        if e["ph"] == "X":
            assert _number(e.get("dur")) and e["dur"] >= 0, where
            start = round(e["ts"] * 1000)  # exact in ns: the exporter writes ns / 1000
            spans[(e["pid"], e["tid"])].append((start, start + round(e["dur"] * 1000)))
        elif e["ph"] == "i":
            assert e.get("s") in ("g", "p", "t"), where
        else:
            key, kind = METADATA_ARG[e["name"]]
            assert isinstance(e.get("args", {}).get(key), kind), where
            named.add((e["name"], e["pid"], e["tid"]))
        if e["ph"] != "M":
            used.add((e["pid"], e["tid"]))
    for pid, tid in used:  # every track is named
        assert ("thread_name", pid, tid) in named and ("process_name", pid, 0) in named
    for track, intervals in spans.items():  # complete events on a track nest properly
        stack: list[tuple[int, int]] = []
        for start, end in sorted(intervals, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1][1] <= start:
                stack.pop()
            assert not stack or end <= stack[-1][1], f"overlap on {track}: {start, end}"
            stack.append((start, end))
    json.dumps(doc, allow_nan=False)
    return doc


def tracks(doc: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    return {e["args"]["name"]: (e["pid"], e["tid"]) for e in doc["traceEvents"]
            if e["ph"] == "M" and e["name"] == "thread_name"}


def on(doc: Mapping[str, Any], track: tuple[int, int], ph: str = "X") -> list[dict[str, Any]]:
    return [e for e in doc["traceEvents"]
            if (e["pid"], e["tid"]) == track and e["ph"] == ph]


# --- events_frame --------------------------------------------------------------------------

DTYPES = {"kind": "category", "stream": "category", "step": "int64", "agent": "string",
          "index": "Int64", "offset": "Int64", "part": "Int64", "seq": "Int64",
          "time": "float64", "data": "object"}


def _plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


@pytest.mark.parametrize("journal", GOLDEN, ids=lambda p: p.stem)
def test_frame_of_a_journal_has_one_typed_row_per_committed_event(journal: Path) -> None:
    pd = pytest.importorskip("pandas")
    events = wb.events_from_journal(journal)
    frame = wb.events_frame(journal)
    assert len(frame) == len(events) and list(frame.columns) == list(DTYPES)
    assert {c: str(t) for c, t in frame.dtypes.items()} == DTYPES
    assert list(frame["kind"]) == [e.kind for e in events]
    assert set(frame["stream"]) == {"committed"} and frame["seq"].isna().all()
    assert list(frame["index"]) == [e.index for e in events]
    assert list(frame["offset"]) == [e.offset for e in events]
    assert [None if a is pd.NA else a for a in frame["agent"]] == [e.agent for e in events]
    assert all(_plain(d) for d in frame["data"])
    assert frame["data"][0] == {"seed": events[0].data["seed"],
                                "agents": list(events[0].data["agents"]),
                                "policy": events[0].data["policy"]}
    assert wb.events_frame(wb.read_journal(journal)).equals(frame)


def test_frame_of_mixed_events_and_of_none() -> None:
    pd = pytest.importorskip("pandas")
    committed = wb.events_from_journal(GOLDEN[0])[:3]
    live = [StepRunning(step=0, seq=0, time=5.0, agents=("a", "b")),
            TokenStreamed(step=0, agent="a", seq=1, time=5.5, call=0, token=7, text="x"),
            Gap(step=0, seq=4, dropped=2),
            BatchRan(step=0, seq=5, time=6.0, phase="end", agents=("a",), tokens=(3,),
                     queue_s=(0.1,), prefill_s=(0.2,), decode_s=(0.3,))]
    frame = wb.events_frame([committed[0], *live, *committed[1:]])
    assert {c: str(t) for c, t in frame.dtypes.items()} == DTYPES
    assert list(frame["stream"]) == ["committed", *["live"] * 4, "committed", "committed"]
    assert list(frame["seq"].astype(object).where(frame["seq"].notna(), None)) == [
        None, 0, 1, 4, 5, None, None]
    assert frame["index"].isna().tolist() == [False, *[True] * 4, False, False]
    assert frame["part"][1] is pd.NA and frame["agent"][2] == "a"
    assert frame["data"][4] == {"phase": "end", "agents": ["a"], "batch": 0, "provider": None,
                                "tokens": [3], "queue_s": [0.1], "prefill_s": [0.2],
                                "decode_s": [0.3]}
    assert set(frame["kind"].cat.categories) == set(wb.EVENT_KINDS)
    empty = wb.events_frame([])
    assert len(empty) == 0 and {c: str(t) for c, t in empty.dtypes.items()} == DTYPES
    with pytest.raises(TypeError, match="item 1 is a dict"):
        wb.events_frame([committed[0], {"kind": "x"}])
    with pytest.raises(TypeError, match="not one event"):
        wb.events_frame(committed[0])  # type: ignore[arg-type]


def test_frame_without_pandas_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install 'workbench\[pandas\]'"):
        wb.events_frame(GOLDEN[0])


# --- export_trace --------------------------------------------------------------------------

@pytest.mark.parametrize("journal", GOLDEN, ids=lambda p: p.stem)
def test_trace_of_each_golden_journal_is_valid(journal: Path, tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    result = wb.export_trace(journal, out)
    doc = check_trace(out)
    assert result.dropped == 0 and result.events == len(doc["traceEvents"])
    named = tracks(doc)
    header = wb.read_journal(journal).typed[0]
    assert isinstance(header, RunHeader)
    events = wb.events_from_journal(journal)
    for spec in header.agents:
        steps = [e for e in events if e.kind == "agent_stepped" and e.agent == spec.name]
        spans = on(doc, named[f"agent {spec.name}"])
        assert len([s for s in spans if s["cat"] == "agent"]) == len(steps)
        assert [s["name"] for s in spans] == [e.data["status"] for e in steps]
    assert any(name.startswith("engine") for name in named)
    faults = [e for e in doc["traceEvents"] if e.get("cat") == "fault"]
    assert len(faults) == sum(e.kind == "fault" for e in events)
    assert all(f["ph"] == "i" and f["s"] == "p" for f in faults)
    run_steps = on(doc, named["run: steps and user messages"])
    assert [s["args"]["step"] for s in run_steps] == [e.step for e in events
                                                      if e.kind == "step_started"]


def test_trace_is_bounded(tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    result = wb.export_trace(GOLDEN[-1], out, max_events=6)
    doc = check_trace(out)
    assert result.dropped > 0 and "truncated" in doc["otherData"]
    marker = [e for e in doc["traceEvents"] if e["name"] == "trace truncated"]
    assert marker and marker[0]["args"]["dropped"] == result.dropped
    assert len([e for e in doc["traceEvents"] if e["ph"] != "M"]) <= 6 + 1


def twice(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    """Agent i asks 1 + i % 2 questions a step, for two steps."""
    for k in range(1 + state["i"] % 2):
        host.infer({"prompt": f"q {state['i']} {k}", "max_tokens": 3})
    n = state["n"] + 1
    return {"state": {"i": state["i"], "n": n}, "outbox": [],
            "status": "done" if n == 2 else "ready"}


def test_trace_of_a_model_run_with_live_batches(tmp_path: Path,
                                                tiny_model: ModelFiles) -> None:
    seen: list[wb.Event] = []
    with wb.Run(seed=2, policy="parallel", model=tiny_model, journal=tmp_path / "j.wbj",
                max_batch=3, engine_options={"threads": 1}) as run:
        for i in range(5):
            run.add_agent(f"a{i}", twice, state={"i": i, "n": 0})
        sub = run.subscribe(seen.append)
        run.run()
        assert sub.flush()
        sub.close()
    live = [e for e in seen if isinstance(e, BatchRan) and e.phase == "end"]
    # per step: round 0 of all five agents in chunks of 3 and 2, round 1 of a1 and a3
    assert [(e.step, list(e.agents)) for e in live] == [
        (t, agents) for t in (0, 1)
        for agents in (["a0", "a1", "a2"], ["a3", "a4"], ["a1", "a3"])]
    out = tmp_path / "trace.json"
    wb.export_trace(tmp_path / "j.wbj", out, live=seen)
    doc = check_trace(out)
    named = tracks(doc)
    engine = on(doc, named["engine: infer calls in derived batches"])
    derived = [(s["args"]["step"], s["args"]["batch"], s["args"]["agents"])
               for s in engine if s["cat"] == "batch"]
    assert derived == [(e.step, e.batch, list(e.agents)) for e in live]
    calls = [s for s in engine if s["cat"] == "infer"]
    assert len(calls) == 2 * 7 and all(s["args"]["tokens"] == 3 for s in calls)
    assert {s["args"]["provider"] for s in calls} == {"CPUExecutionProvider"}
    measured = on(doc, named["engine: batches"])
    assert [(s["args"]["step"], s["args"]["batch"], s["args"]["agents"])
            for s in measured] == derived
    assert {p for p, _ in (named["engine: batches"],
                           named["engine: infer calls in derived batches"])} == {1, 2}
    for i in range(5):
        asks = 2 * (1 + i % 2)
        assert len(on(doc, named[f"agent a{i}"])) == 2 + asks  # two steps, their calls
        phases = [s["name"] for s in on(doc, named[f"agent a{i}: infer requests"])]
        assert sorted(phases) == sorted(["queue", "prefill", "decode"] * asks)
    assert len(calls) == sum(e.kind == "infer_done" for e in seen)


def test_live_batches_without_start_events_and_of_an_abandoned_step(tmp_path: Path) -> None:
    def end(seq: int, step: int, at: float) -> BatchRan:
        return BatchRan(step=step, seq=seq, time=at, phase="end", agents=("talker", "x"),
                        tokens=(2, 2), queue_s=(0.5, 0.25), prefill_s=(0.1, 0.2),
                        decode_s=(0.3, 0.4))

    live = [StepRunning(step=0, seq=0, agents=("talker",)), end(1, 0, 10.0),
            StepAbandoned(step=0, seq=2, reason="engine failed"),
            StepRunning(step=0, seq=3, agents=("talker",)), end(4, 0, 12.0)]
    out = tmp_path / "trace.json"
    result = wb.export_trace(GOLDEN[-1], out, live=live)
    doc = check_trace(out)
    named = tracks(doc)
    batches = on(doc, named["engine: batches"])
    assert [b.get("args", {}).get("abandoned", False) for b in batches] == [True, False]
    assert batches[0]["dur"] == pytest.approx(0.7e6)  # prefills + the longest decode
    phases = on(doc, named["agent x: infer requests"])  # not in the header: a track anyway
    assert [p["name"] for p in phases] == ["queue", "prefill", "decode"] * 2
    assert doc["otherData"]["live_batches"] == 2 and result.dropped == 0

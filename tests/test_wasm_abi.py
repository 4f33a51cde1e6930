"""ABI v1 codec: step input encoding, output decoding, outcomes, the host adapter."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wasm_helpers import RecordingHostCalls

from workbench._hostcalls import UnreadableRequest
from workbench._types import Fault, Limits, Message, Outgoing, StepRequest
from workbench._wasm._abi import (
    ABI_VERSION,
    MAX_JSON_DEPTH,
    HostCallsAdapter,
    StepOutcome,
    agent_identity,
    decode_output,
    encode_input,
    outcome_to_result,
)

MAX = 1 << 20


def decode(raw: bytes, max_output_bytes: int = MAX) -> object:
    return decode_output(raw, max_output_bytes=max_output_bytes)


# --- input --------------------------------------------------------------------------------


def test_input_is_canonical_json() -> None:
    msg = Message(sender="b", seq=3, step=1, to="a", payload={"z": 1, "é": [1.5, None]})
    req = StepRequest(agent="a", step=2, state={"k": "ü", "a": True}, inbox=(msg,))
    raw = encode_input(req)
    assert raw == (
        '{"agent":"a","inbox":[{"from":"b","payload":{"z":1,"é":[1.5,null]},"seq":3,'
        '"step":1,"to":"a"}],"state":{"a":true,"k":"ü"},"step":2}'
    ).encode()


def test_input_rejects_nan() -> None:
    with pytest.raises(ValueError):
        encode_input(StepRequest(agent="a", step=0, state=math.nan, inbox=()))


# --- output: accepted ----------------------------------------------------------------------


def test_minimal_output_gets_defaults() -> None:
    result = decode(b'{"state":{"n":1}}')
    assert result.fault is None
    assert (result.state, result.outbox, result.status) == ({"n": 1}, (), "ready")


def test_full_output() -> None:
    raw = json.dumps({"state": [1, "x"], "status": "done",
                      "outbox": [{"to": "b", "payload": {"p": 1}},
                                 {"to": "c", "payload": None}]}).encode()
    result = decode(raw)
    assert result.fault is None
    assert result.status == "done"
    assert result.outbox == (Outgoing("b", {"p": 1}), Outgoing("c", None))


def test_output_at_exactly_the_limit_passes() -> None:
    raw = b'{"state":"' + b"x" * 100 + b'"}'
    assert decode(raw, max_output_bytes=len(raw)).fault is None
    result = decode(raw, max_output_bytes=len(raw) - 1)
    assert result.fault == Fault("limit", result.fault.detail, {
        "limit": "max_output_bytes", "value": len(raw), "max": len(raw) - 1})


# --- output: every malformation is a typed fault ------------------------------------------

MALFORMED = {
    "bad utf-8": b'{"state":"\xff"}',
    "truncated utf-8": b'{"state":"\xc3"}',
    "empty": b"",
    "not json": b"{state: 1}",
    "trailing garbage": b'{"state":1} x',
    "nan": b'{"state":NaN}',
    "infinity": b'{"state":-Infinity}',
    "float overflowing to infinity": b'{"state":[1.5,-1e400]}',
    "top-level list": b"[1]",
    "top-level string": b'"state"',
    "missing state": b'{"status":"ready"}',
    "unknown key": b'{"state":1,"outbx":[]}',
    "bad status": b'{"state":1,"status":"sleeping"}',
    "status not a string": b'{"state":1,"status":1}',
    "outbox not a list": b'{"state":1,"outbox":{"to":"b"}}',
    "outbox entry not an object": b'{"state":1,"outbox":["b"]}',
    "outbox entry without to": b'{"state":1,"outbox":[{"payload":1}]}',
    "outbox entry without payload": b'{"state":1,"outbox":[{"to":"b"}]}',
    "outbox entry extra key": b'{"state":1,"outbox":[{"to":"b","payload":1,"x":2}]}',
    "empty recipient": b'{"state":1,"outbox":[{"to":"","payload":1}]}',
    "recipient not a string": b'{"state":1,"outbox":[{"to":7,"payload":1}]}',
    "duplicate key": b'{"state":1,"state":2}',
    "duplicate nested key": b'{"state":{"a":1,"a":1}}',
    "too deep": b'{"state":' + b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1) + b"}",
    "deeper than the parser": b'{"state":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_output_is_a_fault(raw: bytes) -> None:
    result = decode(raw)
    assert result.fault is not None
    assert result.fault.kind == "malformed_output"
    assert result.fault.data["reason"]
    assert "docs/abi.md" in result.fault.detail
    json.dumps(result.fault.to_json())  # journalable


def test_nesting_just_within_the_limit_passes() -> None:
    depth = MAX_JSON_DEPTH - 1  # the output object itself is one level
    raw = b'{"state":' + b"[" * depth + b"]" * depth + b"}"
    assert decode(raw).fault is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    result = decode(raw, max_output_bytes=150)
    assert result.fault is None or result.fault.kind in ("malformed_output", "limit")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_never_raises(value: object) -> None:
    result = decode(json.dumps(value).encode())
    if result.fault is None:
        assert isinstance(value, dict) and "state" in value
    else:
        assert result.fault.kind == "malformed_output"


# --- outcomes ------------------------------------------------------------------------------


def test_outcome_fault_passes_through() -> None:
    f = Fault("out_of_fuel", "used it all", {"fuel": 5, "consumed": 5})
    result = outcome_to_result(StepOutcome(None, f, 5), max_output_bytes=MAX)
    assert result.fault == f


def test_malformed_output_at_the_memory_limit_is_a_memory_fault() -> None:
    outcome = StepOutcome(b'{"state":', None, 10, memory_size=3 * 65536, memory_at_limit=True)
    result = outcome_to_result(outcome, max_output_bytes=MAX)
    assert result.fault is not None and result.fault.kind == "memory_limit"
    assert result.fault.data["cause"]["kind"] == "malformed_output"
    assert result.fault.data["memory_size"] == 3 * 65536


def test_valid_output_at_the_memory_limit_is_a_result() -> None:
    outcome = StepOutcome(b'{"state":1}', None, 10, memory_size=65536, memory_at_limit=True)
    assert outcome_to_result(outcome, max_output_bytes=MAX).state == 1


# --- the host adapter ------------------------------------------------------------------------


def test_adapter_round_trips_infer() -> None:
    calls = RecordingHostCalls(lambda req: {"text": "é", "echo": req["prompt"]})
    reply = HostCallsAdapter(calls).infer('{"prompt":"hi ü"}'.encode())
    assert reply == '{"echo":"hi ü","text":"é"}'.encode()
    assert calls.calls == [("infer", {"prompt": "hi ü"})]


@pytest.mark.parametrize("request_bytes", [b"\xff", b"{", b'{"prompt":NaN}',
                                           b'{"prompt":"x","temperature":1e999}',
                                           b'{"prompt":"x","stop":' + b"[" * 300 + b"]" * 300
                                           + b"}"])
def test_adapter_answers_bad_requests_with_an_error(request_bytes: bytes) -> None:
    """A bad request reaches the host as unreadable (so the run journals the refusal)."""
    def refuse(req: object) -> dict[str, object]:
        assert isinstance(req, UnreadableRequest)
        raise ValueError(req.reason)

    calls = RecordingHostCalls(refuse)
    reply = json.loads(HostCallsAdapter(calls).infer(request_bytes))
    assert set(reply) == {"error"} and reply["error"].startswith("infer request ")
    assert [name for name, _ in calls.calls] == ["infer"]


def test_adapter_turns_value_error_into_an_error_reply() -> None:
    def reject(req: object) -> dict[str, object]:
        raise ValueError("'max_tokens' must be an integer")

    reply = HostCallsAdapter(RecordingHostCalls(reject)).infer(b'{"prompt":"x"}')
    assert json.loads(reply) == {"error": "'max_tokens' must be an integer"}


def test_adapter_lets_host_failures_through() -> None:
    def fail(req: object) -> dict[str, object]:
        raise RuntimeError("engine died")

    with pytest.raises(RuntimeError, match="engine died"):
        HostCallsAdapter(RecordingHostCalls(fail)).infer(b'{"prompt":"x"}')


def test_adapter_log_replaces_bad_utf8_and_passes_numbers() -> None:
    calls = RecordingHostCalls()
    adapter = HostCallsAdapter(calls)
    adapter.log(b"ok \xff")
    assert adapter.random() == (1 << 64) - 1
    assert adapter.now() == 3_000_000_001
    assert calls.calls[0] == ("log", "ok \ufffd")


def test_identity() -> None:
    ident = agent_identity("ab" * 32, Limits(fuel=7, memory_bytes=65536), ("log",))
    assert ident.kind == "wasm" and ident.hash == "ab" * 32
    assert ident.config == {"abi": ABI_VERSION, "capabilities": ["log"], "fuel": 7,
                            "memory_bytes": 65536, "max_output_bytes": Limits().max_output_bytes}

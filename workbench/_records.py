"""The journal's records: one frozen class per kind, defined once, read and written by all.

The scheduler and :class:`~workbench.Run` write these; state folding (``_state``), rewind,
fork, replay, ``inspect``, the committed event stream and the exporters read them. Each class
names its JSON keys (short, as the journal stores them) in its fields' metadata, and
:func:`record_from_json` checks a journaled dict against the class before anything reads it,
so a record of the wrong shape is a :class:`~workbench.errors.JournalCorrupt` at its offset,
never a ``KeyError`` deep in a reader. ``docs/internals.md`` shows :func:`schema_table`
(a test keeps them equal).

The journal format version is :data:`JOURNAL_VERSION` (the header's ``v``); a change to any
class here that changes journal bytes must bump it (the golden journals in
``tests/golden/`` fail loudly otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from workbench._types import JSON, Message
from workbench.errors import JournalCorrupt, short_repr

__all__ = ["JOURNAL_VERSION", "AgentResult", "AgentSpec", "Call", "Commit", "EngineWarning",
           "OutMessage", "Record", "RunHeader", "Snapshot", "StepStart", "UserSend",
           "committed", "record_from_json", "schema_table"]

JOURNAL_VERSION = 1
"""The run header's ``v``: what the records mean. Replay refuses other versions."""

Check = Callable[[Any], bool]


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _any(v: Any) -> bool:
    return True


def _obj_or_none(v: Any) -> bool:
    return v is None or isinstance(v, dict)


def _list_of(check: Check) -> Check:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


class _Part:
    """A JSON object with fixed keys. ``SCHEMA`` lists (field, JSON key, meaning, check) in
    field order; the dataclass fields carry the values."""

    SCHEMA: ClassVar[tuple[tuple[str, str, str, Check], ...]]

    def to_json(self) -> dict[str, JSON]:
        return self.schema_json()

    def schema_json(self) -> dict[str, JSON]:
        """The JSON object as the SCHEMA describes it (the hot record kinds write the same
        object directly in ``to_json``; a test keeps the two equal)."""
        return {key: _encode(getattr(self, name)) for name, key, _, _ in self.SCHEMA}

    @classmethod
    def _checked(cls, data: Mapping[str, Any], what: str) -> dict[str, Any]:
        """The field values in ``data`` (by JSON key), each checked; ValueError if not."""
        values = {}
        for name, key, _, check in cls.SCHEMA:
            if key not in data:
                raise ValueError(f"{what} lacks {key!r}")
            if not check(data[key]):
                raise ValueError(f"{what} has a malformed {key!r}: "
                                 f"{short_repr(data[key], 80)}")
            values[name] = data[key]
        return values


class _Record(_Part):
    """A journal record: its JSON object starts with ``"k": KIND``."""

    KIND: ClassVar[str]
    DOC: ClassVar[str]

    def to_json(self) -> dict[str, JSON]:
        return self.schema_json()

    def schema_json(self) -> dict[str, JSON]:
        return {"k": self.KIND, **super().schema_json()}

    @classmethod
    def _fields_of(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return cls._checked(data, f"{cls.KIND!r} record")


def _encode(value: Any) -> JSON:
    """JSON of a field: parts become objects and tuples lists; JSON values (states,
    payloads: already plain lists and dicts) are passed on as they are, not walked."""
    if isinstance(value, _Part):
        return value.to_json()
    if isinstance(value, tuple):
        return [v.to_json() if isinstance(v, _Part) else list(v) if isinstance(v, tuple) else v
                for v in value]
    result: JSON = value
    return result


def _is_obj(v: Any) -> bool:
    return isinstance(v, dict)


def _identity_ok(v: Any) -> bool:
    return isinstance(v, dict) and _str(v.get("kind"))


@dataclass(frozen=True)
class AgentSpec(_Part):
    """One agent as the run header declares it."""

    SCHEMA: ClassVar = (
        ("name", "name", "agent name", _str),
        ("identity", "id", "executor identity: kind, hash, ...", _identity_ok),
        ("state", "state", "initial state", _any),
        ("capabilities", "caps", "granted host calls", _list_of(_str)),
        ("limits", "limits", "Limits.to_json()", _is_obj),
        ("on_fault", "on_fault", "continue, restart or fail", _str))
    name: str
    identity: Mapping[str, JSON]
    state: JSON
    capabilities: tuple[str, ...]
    limits: Mapping[str, JSON]
    on_fault: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AgentSpec:
        values = cls._checked(data, "an agent of the run header")
        return cls(**{**values, "capabilities": tuple(values["capabilities"])})


@dataclass(frozen=True)
class OutMessage(_Part):
    """A message an agent sent, as its committed result holds it."""

    SCHEMA: ClassVar = (
        ("to", "to", "recipient", _str),
        ("seq", "seq", "the sender's message counter", _int),
        ("payload", "payload", "the message (canonical JSON)", _any))
    to: str
    seq: int
    payload: JSON


def _agents_ok(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(a, dict) for a in v)


@dataclass(frozen=True)
class RunHeader(_Record):
    KIND: ClassVar[str] = "run"
    DOC: ClassVar[str] = "the first record: everything the run's result depends on"
    SCHEMA: ClassVar = (
        ("version", "v", "journal format version", _int),
        ("seed", "seed", "run seed", _int),
        ("policy", "policy", "scheduling policy", _is_obj),
        ("agents", "agents", "the team in agent order (see below)", _agents_ok),
        ("channels", "channels", "[from, to] pairs, sorted", _list_of(_list_of(_str))),
        ("engine", "engine", "engine.describe() (model, hash, provider, settings, cpu) "
         "or null", _obj_or_none),
        ("max_batch", "max_batch", "inference batch bound", _int),
        ("concurrency", "concurrency", "agents running at once", _int),
        ("parent", "parent", "a fork's parent (journal, step, sha256) or null", _obj_or_none))
    version: int
    seed: int
    policy: Mapping[str, JSON]
    agents: tuple[AgentSpec, ...]
    channels: tuple[tuple[str, str], ...]
    engine: Mapping[str, JSON] | None
    max_batch: int
    concurrency: int
    parent: Mapping[str, JSON] | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunHeader:
        values = cls._fields_of(data)
        values["agents"] = tuple(AgentSpec.from_json(a) for a in values["agents"])
        values["channels"] = tuple((a, b) for a, b in values["channels"])
        return cls(**values)


@dataclass(frozen=True)
class Snapshot(_Record):
    KIND: ClassVar[str] = "snapshot"
    DOC: ClassVar[str] = "a fork's starting state"
    SCHEMA: ClassVar = (("state", "state", "the whole run state (RunState.to_json())", _is_obj),)
    state: Mapping[str, JSON]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Snapshot:
        return cls(**cls._fields_of(data))


def _message_ok(v: Any) -> bool:
    return (isinstance(v, dict) and _str(v.get("from")) and _int(v.get("seq"))
            and _int(v.get("step")) and _str(v.get("to")))


@dataclass(frozen=True)
class UserSend(_Record):
    KIND: ClassVar[str] = "send"
    DOC: ClassVar[str] = "a message from run.send() (sender @user)"
    SCHEMA: ClassVar = (("message", "msg", "from, seq, step, to, payload", _message_ok),)
    message: Mapping[str, JSON]

    @classmethod
    def of(cls, message: Message) -> UserSend:
        return cls(message.to_json())

    def as_message(self) -> Message:
        m: Mapping[str, Any] = self.message
        return Message(m["from"], m["seq"], m["step"], m["to"], m.get("payload"))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UserSend:
        return cls(**cls._fields_of(data))


@dataclass(frozen=True)
class StepStart(_Record):
    KIND: ClassVar[str] = "step"
    DOC: ClassVar[str] = "step t begins: the agents the policy picked"
    SCHEMA: ClassVar = (
        ("step", "t", "step index", _int),
        ("agents", "run", "agents that run, in agent order", _list_of(_str)),
        ("cursor", "cursor", "the policy's cursor after picking", _int),
        ("inbox", "inbox", "messages delivered to each of them", _list_of(_int)))
    step: int
    agents: tuple[str, ...]
    cursor: int
    inbox: tuple[int, ...]

    def to_json(self) -> dict[str, JSON]:
        return {"k": "step", "t": self.step, "run": list(self.agents), "cursor": self.cursor,
                "inbox": list(self.inbox)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepStart:
        values = cls._fields_of(data)
        return cls(**{**values, "agents": tuple(values["agents"]),
                      "inbox": tuple(values["inbox"])})


@dataclass(frozen=True)
class Call(_Record):
    KIND: ClassVar[str] = "call"
    DOC: ClassVar[str] = "one host call of an agent, in call order"
    SCHEMA: ClassVar = (
        ("step", "t", "step index", _int),
        ("agent", "a", "agent name", _str),
        ("index", "i", "call index within the agent's step", _int),
        ("fn", "fn", "infer, log, random or now", _str),
        ("request", "req", "the request (infer body, log text) or null", _any),
        ("result", "res", "the answer (infer result, number) or null", _any))
    step: int
    agent: str
    index: int
    fn: str
    request: JSON
    result: JSON

    def to_json(self) -> dict[str, JSON]:
        return {"k": "call", "t": self.step, "a": self.agent, "i": self.index, "fn": self.fn,
                "req": self.request, "res": self.result}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Call:
        return cls(**cls._fields_of(data))


def _fault_ok(v: Any) -> bool:
    return v is None or (isinstance(v, dict) and _str(v.get("kind")) and _str(v.get("detail")))


def _out_ok(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(m, dict) and _str(m.get("to"))
                                       and _int(m.get("seq")) for m in v)


def _counters_ok(v: Any) -> bool:
    return _list_of(_int)(v) and len(v) == 2


@dataclass(frozen=True)
class AgentResult(_Record):
    KIND: ClassVar[str] = "agent"
    DOC: ClassVar[str] = "one agent's committed result of step t (after its calls)"
    SCHEMA: ClassVar = (
        ("step", "t", "step index", _int),
        ("agent", "a", "agent name", _str),
        ("fault", "fault", "kind, detail, data; or null", _fault_ok),
        ("state", "state", "the agent's state after the step", _any),
        ("status", "status", "ready, idle, done or faulted", _str),
        ("outbox", "out", "messages sent: to, seq, payload", _out_ok),
        ("counters", "ctr", "[infer requests, tokens] so far", _counters_ok))
    step: int
    agent: str
    fault: Mapping[str, JSON] | None
    state: JSON
    status: str
    outbox: tuple[OutMessage, ...]
    counters: tuple[int, int]

    def to_json(self) -> dict[str, JSON]:
        return {"k": "agent", "t": self.step, "a": self.agent, "fault": self.fault,
                "state": self.state, "status": self.status,
                "out": [{"to": m.to, "seq": m.seq, "payload": m.payload} for m in self.outbox],
                "ctr": list(self.counters)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AgentResult:
        values = cls._fields_of(data)
        values["outbox"] = tuple(OutMessage(m["to"], m["seq"], m.get("payload"))
                                 for m in values["outbox"])
        values["counters"] = tuple(values["counters"])
        return cls(**values)


@dataclass(frozen=True)
class EngineWarning(_Record):
    KIND: ClassVar[str] = "warn"
    DOC: ClassVar[str] = "an engine warning (provider fallback), journaled with step t"
    SCHEMA: ClassVar = (
        ("step", "t", "step index (-1: before the first step)", _int),
        ("data", "*", "what, failed, next, reason, when: the warning's own keys", _any))
    step: int
    data: Mapping[str, JSON]

    def to_json(self) -> dict[str, JSON]:
        return {"k": self.KIND, "t": self.step, **self.data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EngineWarning:
        if not _int(data.get("t")):
            raise ValueError(f"'warn' record has a malformed 't': {short_repr(data.get('t'), 80)}")
        return cls(data["t"], {k: v for k, v in data.items() if k not in ("k", "t")})


@dataclass(frozen=True)
class Commit(_Record):
    KIND: ClassVar[str] = "commit"
    DOC: ClassVar[str] = "step t is complete (a step without it is dropped on reading)"
    SCHEMA: ClassVar = (("step", "t", "step index", _int),)
    step: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Commit:
        return cls(**cls._fields_of(data))


Record = RunHeader | Snapshot | UserSend | StepStart | Call | AgentResult | EngineWarning | Commit
RECORD_CLASSES: tuple[type[_Record], ...] = (RunHeader, Snapshot, UserSend, StepStart, Call,
                                         AgentResult, EngineWarning, Commit)
_BY_KIND: dict[str, Any] = {c.KIND: c for c in RECORD_CLASSES}


def committed(records: list[Record]) -> list[Record]:
    """``records`` without a last step that has no commit record (a crash mid-step)."""
    last = len(records)
    for i in range(len(records) - 1, -1, -1):
        if isinstance(records[i], Commit | RunHeader):
            break
        if isinstance(records[i], StepStart):
            last = i
    return records[:last]


def record_from_json(data: Mapping[str, Any], *, path: str = "<journal>",
                     offset: int = 0) -> Record:
    """The typed record of a journaled dict. Raises :class:`JournalCorrupt` (naming the path
    and byte offset) for an unknown kind or a field of the wrong shape."""
    cls = _BY_KIND.get(str(data.get("k")))
    if cls is None:
        raise JournalCorrupt(path, offset, f"unknown record kind {data.get('k')!r}")
    try:
        record: Record = cls.from_json(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise JournalCorrupt(path, offset, str(exc)) from exc
    return record


def schema_table() -> str:
    """The record schemas as a Markdown table (docs/internals.md shows this text)."""
    rows = ["| kind | key | field | meaning |", "|---|---|---|---|"]
    parts: tuple[type[_Part], ...] = (*RECORD_CLASSES, AgentSpec, OutMessage)
    for cls in parts:
        if issubclass(cls, _Record):
            kind, doc = f"`{cls.KIND}`", cls.DOC
        else:
            kind, doc = f"({cls.__name__})", (cls.__doc__ or "").strip()
        rows.append(f"| {kind} | | | {doc} |")
        for name, key, doc, _ in cls.SCHEMA:
            rows.append(f"| | `{key}` | `{name}` | {doc} |")
    return "\n".join(rows)

"""The run's dynamic state, and how each journal record changes it.

The scheduler commits a step by building its records and then applying them here, and
rewind/fork rebuild a run by applying the journal's records here: one code path, so a
restored run is exactly the run that wrote the journal.

The record kinds are the classes of ``_records``; header, call and warning records change
nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench._records import AgentResult, Commit, Record, Snapshot, StepStart, UserSend
from workbench._types import JSON, Message

USER = "@user"


@dataclass
class AgentState:
    state: JSON
    status: str = "ready"  # ready | idle | done | faulted
    seq: int = 0  # messages sent so far
    infer: int = 0  # infer requests so far (keys seeded sampling)
    tokens: int = 0  # tokens generated so far

    def to_json(self) -> dict[str, JSON]:
        return {"state": self.state, "status": self.status, "seq": self.seq,
                "infer": self.infer, "tokens": self.tokens}


@dataclass
class RunState:
    """Everything that changes as a run goes on. JSON-serialisable via ``to_json``."""

    order: list[str]
    agents: dict[str, AgentState]
    step: int = 0  # the next step to run
    cursor: int = -1  # the policy's cursor
    user_seq: int = 0
    pending: list[Message] = field(default_factory=list)

    @classmethod
    def initial(cls, order: Sequence[str], states: Mapping[str, JSON]) -> RunState:
        return cls(list(order), {n: AgentState(states[n]) for n in order})

    def to_json(self) -> dict[str, JSON]:
        return {"step": self.step, "cursor": self.cursor, "user_seq": self.user_seq,
                "agents": {n: self.agents[n].to_json() for n in self.order},
                "pending": [m.to_json() for m in self.pending]}

    @classmethod
    def from_json(cls, order: Sequence[str], data: Mapping[str, Any]) -> RunState:
        agents = {n: AgentState(**data["agents"][n]) for n in order}
        pending = [message_from_json(m) for m in data["pending"]]
        return cls(list(order), agents, data["step"], data["cursor"], data["user_seq"], pending)

    def mailboxes(self, agents: Sequence[str]) -> dict[str, list[Message]]:
        """Waiting messages of each of ``agents``, in delivery order (sender rank, seq)."""
        wanted = set(agents)
        boxes: dict[str, list[Message]] = {}
        for m in self.pending:
            if m.to in wanted:
                boxes.setdefault(m.to, []).append(m)
        ranks = {n: i for i, n in enumerate(self.order)}
        for box in boxes.values():
            box.sort(key=lambda m: (ranks.get(m.sender, -1), m.seq))
        return boxes


def message_from_json(m: Mapping[str, Any]) -> Message:
    return Message(m["from"], m["seq"], m["step"], m["to"], m.get("payload"))


def deliveries(state: RunState, selected: Sequence[str],
               max_messages: Mapping[str, int]) -> dict[str, list[Message]]:
    """The inbox of each selected agent: its oldest waiting messages, up to its limit.
    Messages beyond the limit stay queued for its next step."""
    boxes = state.mailboxes(selected)
    return {a: boxes.get(a, [])[: max_messages[a]] for a in selected}


def apply(state: RunState, record: Record, max_messages: Mapping[str, int]) -> None:
    """Apply one journal record to ``state``."""
    if isinstance(record, UserSend):
        msg = record.as_message()
        state.pending.append(msg)
        state.user_seq = msg.seq + 1
    elif isinstance(record, StepStart):
        state.cursor = record.cursor
        delivered = deliveries(state, record.agents, max_messages)
        taken = {id(m) for msgs in delivered.values() for m in msgs}
        state.pending = [m for m in state.pending if id(m) not in taken]
    elif isinstance(record, AgentResult):
        _apply_agent(state, record)
    elif isinstance(record, Commit):
        state.step = record.step + 1
        dead = {n for n, a in state.agents.items() if a.status in ("done", "faulted")}
        state.pending = [m for m in state.pending if m.to not in dead]
    elif isinstance(record, Snapshot):
        fresh = RunState.from_json(state.order, record.state)
        state.__dict__.update(fresh.__dict__)


def _apply_agent(state: RunState, record: AgentResult) -> None:
    a = state.agents[record.agent]
    a.state = record.state
    a.status = record.status
    a.infer, a.tokens = record.counters
    for out in record.outbox:
        state.pending.append(Message(record.agent, out.seq, record.step, out.to, out.payload))
        a.seq = out.seq + 1

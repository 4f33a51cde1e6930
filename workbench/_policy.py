"""Scheduler policies: which agents run in step t.

A policy sees, in agent order, whether each agent can run (``ready``, or ``idle`` with
messages waiting) and picks some. Its only state is a cursor kept in the run's state, so a
rewound or forked run picks exactly as the original did.

- ``round_robin``: turn-taking; the next runnable agent after the last one that ran.
- ``parallel``: every runnable agent.
- :class:`DAG`: a node with upstream edges runs when its upstream produced (it has messages);
  a source node runs while it says ``ready``. Cycles are allowed only through edges declared
  as ``feedback``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from workbench._types import JSON
from workbench.errors import ConfigError


@dataclass(frozen=True)
class AgentView:
    """What a policy may know about one agent."""

    name: str
    status: str  # "ready" | "idle" | "done" | "faulted"
    has_mail: bool

    @property
    def runnable(self) -> bool:
        return self.status == "ready" or (self.status == "idle" and self.has_mail)


class Policy:
    """Base class. ``select`` returns the names to run, in agent order, and the new cursor."""

    name = "policy"

    def to_json(self) -> dict[str, JSON]:
        return {"name": self.name}

    def validate(self, agents: Sequence[str]) -> None:
        """Raise ConfigError if the policy cannot schedule these agents."""

    def channels(self) -> list[tuple[str, str]]:
        """Channels the policy implies (DAG edges); connected by the run automatically."""
        return []

    def select(self, agents: Sequence[AgentView], cursor: int) -> tuple[list[str], int]:
        raise NotImplementedError


class RoundRobin(Policy):
    name = "round_robin"

    def select(self, agents: Sequence[AgentView], cursor: int) -> tuple[list[str], int]:
        n = len(agents)
        for offset in range(1, n + 1):
            i = (cursor + offset) % n
            if agents[i].runnable:
                return [agents[i].name], i
        return [], cursor


class Parallel(Policy):
    name = "parallel"

    def select(self, agents: Sequence[AgentView], cursor: int) -> tuple[list[str], int]:
        return [a.name for a in agents if a.runnable], cursor


class DAG(Policy):
    """A graph of agents: ``DAG({"plan": ["write", "check"], "write": ["check"]},
    feedback=[("check", "plan")])``. Edges become the run's channels."""

    name = "dag"

    def __init__(self, edges: Mapping[str, Sequence[str]],
                 feedback: Sequence[tuple[str, str]] = ()) -> None:
        self.edges = {src: tuple(dsts) for src, dsts in edges.items()}
        self.feedback = tuple((a, b) for a, b in feedback)
        self._upstream: dict[str, set[str]] = {}
        for src, dsts in self.edges.items():
            for dst in dsts:
                self._upstream.setdefault(dst, set()).add(src)
        _check_acyclic(self.edges)

    def to_json(self) -> dict[str, JSON]:
        return {"name": self.name, "edges": {k: list(v) for k, v in sorted(self.edges.items())},
                "feedback": [list(e) for e in self.feedback]}

    def nodes(self) -> set[str]:
        names = set(self.edges) | set(self._upstream)
        return names | {n for edge in self.feedback for n in edge}

    def validate(self, agents: Sequence[str]) -> None:
        missing = sorted(self.nodes() - set(agents))
        if missing:
            raise ConfigError(f"the DAG names agents that were not added: {missing}; "
                              "add them with run.add_agent(...) first")

    def channels(self) -> list[tuple[str, str]]:
        pairs = [(s, d) for s, dsts in self.edges.items() for d in dsts]
        return pairs + list(self.feedback)

    def select(self, agents: Sequence[AgentView], cursor: int) -> tuple[list[str], int]:
        chosen = []
        for a in agents:
            if a.status in ("done", "faulted"):
                continue
            if a.has_mail or (a.name not in self._upstream and a.status == "ready"):
                chosen.append(a.name)
        return chosen, cursor

    def __repr__(self) -> str:
        return f"DAG({self.edges!r}, feedback={list(self.feedback)!r})"


def _check_acyclic(edges: Mapping[str, Sequence[str]]) -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            cycle = " -> ".join([*path[path.index(node):], node])
            raise ConfigError(f"the DAG has a cycle ({cycle}); declare the closing edge in "
                              "feedback=[(src, dst)] if the loop is intended")
        state[node] = 1
        for nxt in edges.get(node, ()):
            visit(nxt, [*path, node])
        state[node] = 2

    for start in sorted(edges):
        visit(start, [])


def make_policy(policy: str | Policy) -> Policy:
    """Policy from a name or an instance. Raises ConfigError for unknown names."""
    if isinstance(policy, Policy):
        return policy
    table: dict[str, type[Policy]] = {"round_robin": RoundRobin, "parallel": Parallel}
    if policy not in table:
        raise ConfigError(f"unknown policy {policy!r}; use 'round_robin', 'parallel' or "
                          "wb.DAG({...})")
    return table[policy]()


def policy_from_json(data: Mapping[str, JSON]) -> Policy:
    """Rebuild a journaled policy."""
    if data.get("name") == "dag":
        return DAG(data["edges"], [tuple(e) for e in data.get("feedback", [])])
    return make_policy(str(data.get("name")))

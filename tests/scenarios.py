"""Seeded multi-agent scenarios for determinism tests (shared by several test files)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import workbench as wb
from workbench.testing import FakeEngine, inject_jitter


def make_agent(index: int, talkative: int) -> Any:
    """A step function that draws randomness, messages neighbours, sometimes infers."""

    def agent(state: Any, inbox: list[dict[str, Any]], host: Any) -> dict[str, Any]:
        state = state or {"n": 0, "sum": 0, "peers": []}
        state["n"] += 1
        state["sum"] += sum(int(m["payload"].get("v", 0)) for m in inbox)
        r = host.random()
        outbox = []
        peers = state["peers"]
        if peers and r % 3 != 0:
            for k in range(1 + r % talkative):
                to = peers[(r >> (8 + k)) % len(peers)]
                outbox.append((to, {"v": (r >> 16) % 1000, "from": index}))
        if r % 7 == 0:
            reply = host.infer({"prompt": f"agent {index} step {state['n']}", "max_tokens": 2})
            state["said"] = reply["text"]
        if r % 11 == 0:
            host.log(f"now={host.now()}")
        status = "done" if r % 97 == 0 else ("idle" if r % 5 == 0 else "ready")
        return {"state": state, "outbox": outbox, "status": status}

    return agent


def build(scenario: int, seed: int, path: Path, *, jitter: int | None = None,
          engine: FakeEngine | None = None, sandbox: bool = False) -> wb.Run:
    rng = random.Random(scenario)
    n = rng.randint(1, 16)
    names = [f"a{i}" for i in range(n)]
    kind = rng.choice(["round_robin", "parallel", "dag"])
    edges: dict[str, list[str]] = {}
    if kind == "dag":
        for i in range(n):
            later = names[i + 1:]
            edges[names[i]] = rng.sample(later, min(len(later), rng.randint(0, 2)))
        feedback = [(names[-1], names[0])] if n > 1 and rng.random() < 0.5 else []
        policy: Any = wb.DAG(edges, feedback=feedback)
    else:
        policy = kind
    run = wb.Run(seed=seed, policy=policy, model=engine or FakeEngine(), journal=path,
                 max_batch=rng.randint(1, 4))
    if jitter is not None:
        inject_jitter(run, seed=jitter, max_delay=0.0003)
    pairs: set[tuple[str, str]] = set()
    if kind == "dag":
        pairs = {(a, b) for a, bs in edges.items() for b in bs} | set(feedback)
    else:
        for a in names:
            for b in rng.sample(names, min(n, rng.randint(0, 3))):
                if a != b:
                    pairs.add((a, b))
    for i, name in enumerate(names):
        peers = sorted(b for a, b in pairs if a == name)
        run.add_agent(name, make_agent(i, 1 + rng.randint(0, 2)),
                      state={"n": 0, "sum": 0, "peers": peers}, sandbox=sandbox)
    for a, b in sorted(pairs):
        if kind != "dag":
            run.connect(a, b)
    for _ in range(rng.randint(0, 5)):
        run.send(rng.choice(names), {"v": rng.randint(0, 9)})
    return run


def steps_for(scenario: int) -> int:
    return random.Random(scenario * 7919).randint(1, 200)

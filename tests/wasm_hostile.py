"""Hostile WebAssembly agents, one per sandbox limit, and the run they are tested in.

Each :class:`Hostile` is a module that breaks one documented limit (docs/abi.md, *Limits*),
the limits it runs under, and the fault kind and data the journal must then hold. A hostile
agent runs beside well-behaved siblings (``counter.wat``); the siblings' records must not
change, the journal must be the same bytes whichever executor runs the agents (in-process or
the worker pool), and ``wb.replay`` must pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import workbench as wb
from tests.wasm_helpers import agent_wat, wasm
from workbench._types import JSON

AGENTS = Path(__file__).resolve().parent.parent / "examples" / "agents"
SIBLINGS = 2


@dataclass(frozen=True)
class Hostile:
    """A hostile agent: its module, limits and capabilities, and the fault it must get."""

    wat: str
    kind: str
    data: dict[str, JSON]
    limits: dict[str, Any] = field(default_factory=dict)
    caps: tuple[str, ...] = ()
    senders: int = 0  # agents that each send it one message of `message_bytes` first
    message_bytes: int = 0

    @property
    def module(self) -> bytes:
        return wasm(self.wat)


LOG = '(import "host" "log" (func $log (param i32 i32)))'
RANDOM_GET = ('(import "wasi_snapshot_preview1" "random_get" '
              '(func $rg (param i32 i32) (result i32)))')


def _loop(body: str) -> str:
    return f"(loop $l {body} (br $l))"


HANG = Hostile(  # logs, draws a random number, then loops until the backstop stops it
    wat=agent_wat(f"(call $log (i32.const 1024) (i32.const 8)) (drop (call $r)) {_loop('')}",
                  imports=LOG + '(import "host" "random" (func $r (result i64)))'),
    kind="timeout", data={"timeout_s": 0.3}, limits={"fuel": 10**15, "timeout_s": 0.3},
    caps=("log", "random"))

BIG_INBOX = Hostile(  # a receiver of more input than its max_input_bytes
    wat=agent_wat(""), kind="limit",
    data={"limit": "max_input_bytes", "value": 0, "max": 300_000},  # value: see inbox_size
    limits={"max_input_bytes": 300_000}, senders=4, message_bytes=100_000)

RANDOM_GET_FLOOD = Hostile(  # WASI random_get of 256 bytes in a loop
    wat=agent_wat(_loop("(drop (call $rg (i32.const 2048) (i32.const 256)))"),
                  imports=RANDOM_GET),
    kind="limit", data={"limit": "max_host_calls", "value": 10_001, "max": 10_000},
    caps=("random",))

LOG_FLOOD = Hostile(  # log lines of 64 KiB of NUL bytes, until the per-step log budget ends
    wat=agent_wat(_loop("(call $log (i32.const 8192) (i32.const 65536))"), imports=LOG,
                  memory="2"),
    kind="limit", data={"limit": "max_log_bytes", "value": 5 * 65536, "max": 256 * 1024},
    caps=("log",))


def team(path: Path, bad: Hostile | None, *, workers: int | None,
         steps: int = 2) -> Path:
    """Run ``bad`` (if any) beside its siblings for ``steps`` steps; the journal's path."""
    with wb.Run(seed=5, policy="parallel", journal=path, workers=workers) as run:
        for i in range(SIBLINGS):
            run.add_agent(f"count{i}", AGENTS / "counter.wat",
                          capabilities=["random", "now", "log"])
            run.connect(f"count{i}", f"count{i}")
        if bad is not None:
            run.add_agent("bad", bad.module, capabilities=list(bad.caps),
                          limits=wb.Limits(**bad.limits))
            for i in range(bad.senders):
                run.add_agent(f"send{i}", wasm(agent_wat(output=_sender_output(
                    bad.message_bytes))), capabilities=[])
                run.connect(f"send{i}", "bad")
        run.run(steps)
    return path


def _sender_output(size: int) -> bytes:
    return (b'{"state":null,"outbox":[{"to":"bad","payload":"' + b"m" * size
            + b'"}],"status":"done"}')


def siblings(path: Path) -> list[dict[str, Any]]:
    return [r for r in wb.read_journal(path) if r["k"] in ("agent", "call")
            and r["a"].startswith("count")]


def faults(path: Path, agent: str = "bad") -> list[dict[str, Any]]:
    return [r["fault"] for r in wb.read_journal(path) if r["k"] == "agent" and r["a"] == agent]


def calls(path: Path, agent: str = "bad") -> list[dict[str, Any]]:
    return [r for r in wb.read_journal(path) if r["k"] == "call" and r["a"] == agent]

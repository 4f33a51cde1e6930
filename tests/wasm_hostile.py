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
from tests.wasm_helpers import ALLOC, agent_wat, wasm, wat_string
from workbench._types import JSON
from workbench.testing import FakeEngine

AGENTS = Path(__file__).resolve().parent.parent / "examples" / "agents"
SIBLINGS = 2
SMALL_MEMORY = 1 << 20
"""The memory limit of every agent of a team but the hostile one."""


@dataclass(frozen=True)
class Hostile:
    """A hostile agent: its module, limits, capabilities and state, and the fault it must
    get (``kind`` None: it must run without one). ``data`` is what the fault's data must
    hold (a ``limit`` fault's exactly); a ``value`` of None stands for any number over
    ``max``."""

    module: bytes
    kind: str | None
    data: dict[str, JSON]
    limits: dict[str, Any] = field(default_factory=dict)
    caps: tuple[str, ...] = ()
    state: JSON = None
    senders: int = 0  # agents that each send it one message of `message_bytes` first
    message_bytes: int = 0


LOG = '(import "host" "log" (func $log (param i32 i32)))'
INFER = '(import "host" "infer" (func $infer (param i32 i32) (result i64)))'
RANDOM_GET = ('(import "wasi_snapshot_preview1" "random_get" '
              '(func $rg (param i32 i32) (result i32)))')
INFER_REQUEST = b'{"max_tokens":1,"prompt":"again"}'


def _loop(body: str) -> str:
    return f"(loop $l {body} (br $l))"


def _example(name: str) -> bytes:
    return wasm((AGENTS / name).read_text())


HOSTILE: dict[str, Hostile] = {
    # 1. loops until the wall-clock backstop stops it (after a log line and a random draw)
    "hang": Hostile(
        wasm(agent_wat(f"(call $log (i32.const 1024) (i32.const 8)) (drop (call $r)) "
                       f"{_loop('')}",
                       imports=LOG + '(import "host" "random" (func $r (result i64)))')),
        "timeout", {"timeout_s": 0.3}, {"fuel": 10**15, "timeout_s": 0.3}, ("log", "random")),
    # 2. receives more input (its inbox) than its max_input_bytes
    "big_inbox": Hostile(
        wasm(agent_wat()), "limit", {"limit": "max_input_bytes", "value": None, "max": 300_000},
        {"max_input_bytes": 300_000}, senders=4, message_bytes=100_000),
    # 3. one table.grow of 2**28 elements (it must get -1, else it traps) ...
    "table_grow": Hostile(
        wasm(agent_wat("(if (i32.ne (table.grow $t (ref.null func) (i32.const 0x10000000)) "
                       "(i32.const -1)) (then unreachable))", extra="(table $t 1 funcref)")),
        None, {}, {"memory_bytes": 16 * 65536}),
    # ... and a module whose initial table is over the limit
    "big_table": Hostile(
        wasm(agent_wat("", extra="(table $t 2000000 funcref)")), "limit",
        {"limit": "max_table_elements", "value": 2_000_000, "max": 100_000}),
    # 4. WASI random_get of 256 bytes (32 host calls) in a loop
    "random_get_flood": Hostile(
        wasm(agent_wat(_loop("(drop (call $rg (i32.const 2048) (i32.const 256)))"),
                       imports=RANDOM_GET)),
        "limit", {"limit": "max_host_calls", "value": 10_016, "max": 10_000},
        caps=("random",)),
    # 6. log lines of 64 KiB of NUL bytes (6 journal bytes each) until the log budget ends
    "log_flood": Hostile(
        wasm(agent_wat(_loop("(call $log (i32.const 8192) (i32.const 65536))"), imports=LOG,
                       memory="2")),
        "limit", {"limit": "max_log_bytes", "value": 5 * 65536, "max": 256 * 1024},
        caps=("log",)),
    # host calls bounded in number of infer calls ...
    "infer_flood": Hostile(
        wasm(agent_wat(_loop(f"(drop (call $infer (i32.const 2048) "
                             f"(i32.const {len(INFER_REQUEST)})))"), imports=INFER,
                       extra=f'(data (i32.const 2048) "{wat_string(INFER_REQUEST)}")')),
        "limit", {"limit": "max_infer_calls", "value": 257, "max": 256}, caps=("infer",)),
    # ... and in bytes copied: infer requests of 1 MiB of NUL bytes (each refused as not JSON)
    "infer_bytes": Hostile(
        wasm(agent_wat(_loop("(drop (call $infer (i32.const 65536) (i32.const 1048576)))"),
                       imports=INFER, memory="20")),
        "limit", {"limit": "max_step_hostcall_bytes", "value": None, "max": 16 << 20},
        caps=("infer",)),
    # the example agents that misbehave
    "spin": Hostile(_example("spin.wat"), "out_of_fuel", {"fuel": 200_000, "consumed": 200_000},
                    {"fuel": 200_000}),
    "memory_bomb": Hostile(_example("memory_bomb.wat"), "memory_limit",
                           {"memory_bytes": 1 << 20, "memory_size": 1 << 20},
                           {"memory_bytes": 1 << 20}),
    "traps": Hostile(_example("traps.wat"), "trap", {"code": "stack_overflow"}, state=2),
}


def team(path: Path, bad: Hostile | None, *, workers: int | wb.WorkerPool | None,
         steps: int = 2) -> Path:
    """Run ``bad`` (if any) beside its siblings for ``steps`` steps; the journal's path."""
    with wb.Run(seed=5, policy="parallel", journal=path, workers=workers,
                model=FakeEngine()) as run:
        for i in range(SIBLINGS):
            run.add_agent(f"count{i}", AGENTS / "counter.wat",
                          capabilities=["random", "now", "log"], memory=SMALL_MEMORY)
            run.connect(f"count{i}", f"count{i}")
        if bad is not None:
            run.add_agent("bad", bad.module, capabilities=list(bad.caps), state=bad.state,
                          limits=wb.Limits(**bad.limits))
            for i in range(bad.senders):
                run.add_agent(f"send{i}", _sender(bad.message_bytes), capabilities=[],
                              memory=SMALL_MEMORY)
                run.connect(f"send{i}", "bad")
        run.run(steps)
    return path


def _sender(size: int) -> bytes:
    """An agent that sends "bad" one string of ``size`` bytes (``size`` under 128 KiB)."""
    output = (b'{"state":null,"outbox":[{"to":"bad","payload":"' + b"m" * size
              + b'"}],"status":"done"}')
    heap_above_output = ALLOC.replace("(i32.const 4096)", "(i32.const 131072)")
    return wasm(agent_wat(output=output, memory="4", alloc=heap_above_output))


def siblings(path: Path) -> list[dict[str, Any]]:
    return [r for r in wb.read_journal(path) if r["k"] in ("agent", "call")
            and r["a"].startswith("count")]


def faults(path: Path, agent: str = "bad") -> list[dict[str, Any]]:
    return [r["fault"] for r in wb.read_journal(path) if r["k"] == "agent" and r["a"] == agent]


def calls(path: Path, agent: str = "bad") -> list[dict[str, Any]]:
    return [r for r in wb.read_journal(path) if r["k"] == "call" and r["a"] == agent]

"""Helpers for the worker-pool tests: a small WAT agent and a step driver on the real host.

``counter_wat()`` is an ABI v1 agent whose state is a number: each step it logs its whole
input, optionally calls ``infer``, draws ``host.random()`` and returns
``{"state": (n * 31 + (random >> 40) + 1) mod 1000000007}``. Its results therefore depend on
the run seed, the agent's name and the step, so a result routed to the wrong agent or a
re-run that saw other host values shows up at once.

``drive()`` runs steps the way the scheduler does: all agents of a step concurrently (one
thread each) against one real :class:`~workbench._hostcalls.StepHost`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import wasmtime

from workbench._events import EventBus
from workbench._hostcalls import AgentCounters, StepHost
from workbench._types import (
    JSON,
    Executor,
    HostCalls,
    InferenceBackend,
    Limits,
    StepRequest,
    StepResult,
)

CAPS = ("log", "random")

COUNTER_WAT = r'''
(module
  (import "host" "log" (func $log (param i32 i32)))
  (import "host" "random" (func $random (result i64)))
  @INFER_IMPORT@
  (memory (export "memory") 1)
  (data (i32.const 16) "{\"prompt\":\"hi\"}")
  (global $heap (mut i32) (i32.const 1024))
  (func $alloc (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (global.get $heap) (local.get $n)) (i32.const 7))
                               (i32.const -8)))
    (block $ok
      (loop $grow
        (br_if $ok (i32.le_u (global.get $heap) (i32.shl (memory.size) (i32.const 16))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then (return (i32.const 0))))
        (br $grow)))
    (local.get $p))
  (func (export "step") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $end i32) (local $at i32) (local $n i64) (local $c i32)
    (local $out i32) (local $tmp i32) (local $k i32) (local $w i32)
    ;; find the last '"state":'
    (local.set $at (i32.const -1))
    (local.set $end (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const 8)))
    (local.set $i (local.get $ptr))
    (block $done
      (loop $scan
        (br_if $done (i32.gt_s (local.get $i) (local.get $end)))
        (if (i64.eq (i64.load (local.get $i)) (i64.const 0x3a22657461747322))
          (then (local.set $at (i32.add (local.get $i) (i32.const 8)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    ;; parse the number there (null -> 0)
    (local.set $n (i64.const 0))
    (if (i32.ge_s (local.get $at) (i32.const 0))
      (then
        (block $stop
          (loop $digits
            (local.set $c (i32.load8_u (local.get $at)))
            (br_if $stop (i32.lt_u (local.get $c) (i32.const 48)))
            (br_if $stop (i32.gt_u (local.get $c) (i32.const 57)))
            (local.set $n (i64.add (i64.mul (local.get $n) (i64.const 10))
                                   (i64.extend_i32_u (i32.sub (local.get $c) (i32.const 48)))))
            (local.set $at (i32.add (local.get $at) (i32.const 1)))
            (br $digits)))))
    (call $log (local.get $ptr) (local.get $len))
    @INFER_CALL@
    (local.set $n (i64.rem_u
      (i64.add (i64.add (i64.mul (local.get $n) (i64.const 31))
                        (i64.shr_u (call $random) (i64.const 40)))
               (i64.const 1))
      (i64.const 1000000007)))
    @SPIN@
    ;; digits backwards into tmp[0..32)
    (local.set $tmp (call $alloc (i32.const 32)))
    (local.set $k (i32.const 32))
    (loop $fmt
      (local.set $k (i32.sub (local.get $k) (i32.const 1)))
      (i32.store8 (i32.add (local.get $tmp) (local.get $k))
                  (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $n) (i64.const 10)))))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $fmt (i64.ne (local.get $n) (i64.const 0))))
    ;; out = '{"state":' digits '}'
    (local.set $w (i32.sub (i32.const 32) (local.get $k)))
    (local.set $out (call $alloc (i32.add (local.get $w) (i32.const 10))))
    (i32.store8 (local.get $out) (i32.const 123))
    (i32.store8 (i32.add (local.get $out) (i32.const 1)) (i32.const 34))
    (i32.store8 (i32.add (local.get $out) (i32.const 2)) (i32.const 115))
    (i32.store8 (i32.add (local.get $out) (i32.const 3)) (i32.const 116))
    (i32.store8 (i32.add (local.get $out) (i32.const 4)) (i32.const 97))
    (i32.store8 (i32.add (local.get $out) (i32.const 5)) (i32.const 116))
    (i32.store8 (i32.add (local.get $out) (i32.const 6)) (i32.const 101))
    (i32.store8 (i32.add (local.get $out) (i32.const 7)) (i32.const 34))
    (i32.store8 (i32.add (local.get $out) (i32.const 8)) (i32.const 58))
    (memory.copy (i32.add (local.get $out) (i32.const 9)) (i32.add (local.get $tmp) (local.get $k))
                 (local.get $w))
    (i32.store8 (i32.add (i32.add (local.get $out) (i32.const 9)) (local.get $w)) (i32.const 125))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (i32.add (local.get $w) (i32.const 10))))))
'''



def counter_wat(*, infer: bool = False, spin: int = 0) -> str:
    """The agent's WAT; ``infer`` adds a host.infer call, ``spin`` a busy loop of that many
    iterations (to widen the window in which a step is running)."""
    spin_code = "" if not spin else (
        f"(local.set $i (i32.const {spin})) (loop $s (local.set $i (i32.sub (local.get $i) "
        "(i32.const 1))) (br_if $s (local.get $i)))")
    infer_import = '(import "host" "infer" (func $infer (param i32 i32) (result i64)))'
    return (COUNTER_WAT.replace("@INFER_IMPORT@", infer_import if infer else "")
            .replace("@INFER_CALL@",
                     "(drop (call $infer (i32.const 16) (i32.const 15)))" if infer else "")
            .replace("@SPIN@", spin_code))


def counter_wasm(*, infer: bool = False, spin: int = 0) -> bytes:
    return bytes(wasmtime.wat2wasm(counter_wat(infer=infer, spin=spin)))


def marked(marker: bytes) -> bytes:
    """The counter agent with ``marker`` in a data segment (see tests/pool_fake_sandbox.py)."""
    text = counter_wat().replace("(memory (export", f'(data (i32.const 64) "{marker.decode()}")'
                                 "\n  (memory (export", 1)
    return bytes(wasmtime.wat2wasm(text))


Outcome = tuple[JSON, str, JSON, list[dict[str, JSON]]]
"""(state, status, fault as JSON or None, host calls as journaled) of one agent-step."""

HostWrapper = Callable[[str, int, HostCalls], HostCalls]


def drive(executors: Mapping[str, Executor], steps: int, *, seed: int,
          caps: Sequence[str] = CAPS, wrap: HostWrapper | None = None,
          between: Callable[[int], None] | None = None,
          engine: InferenceBackend | None = None) -> list[dict[str, Outcome]]:
    """Run ``steps`` bulk-synchronous steps; each step's outcome per agent.

    ``wrap(agent, step, host)`` may replace an agent's HostCalls; ``between(t)`` runs after
    step ``t`` returned for every agent; ``engine`` serves ``infer`` through the barrier.
    """
    names = list(executors)
    counters = {n: AgentCounters() for n in names}
    states: dict[str, JSON] = dict.fromkeys(names)
    history = []
    with ThreadPoolExecutor(len(names)) as threads:
        for t in range(steps):
            sh = StepHost(seed=seed, step=t, agents=names, engine=engine, max_batch=4,
                          capabilities=dict.fromkeys(names, tuple(caps)),
                          limits=dict.fromkeys(names, Limits()), counters=counters,
                          events=EventBus())

            def one(name: str, sh: StepHost = sh, t: int = t) -> StepResult:
                host: HostCalls = sh.hosts[name]
                if wrap is not None:
                    host = wrap(name, t, host)
                try:
                    return executors[name].step(StepRequest(name, t, states[name], ()), host)
                finally:
                    sh.finished(name)

            results = dict(zip(names, threads.map(one, names), strict=True))
            outcome = {}
            for n in names:
                r = results[n]
                fault = r.fault.to_json() if r.fault is not None else None
                outcome[n] = (r.state, r.status, fault, list(sh.hosts[n].calls))
                if r.fault is None:
                    states[n] = r.state
            history.append(outcome)
            if between is not None:
                between(t)
    return history


def states_of(history: list[dict[str, Outcome]]) -> list[dict[str, Any]]:
    return [{n: o[0] for n, o in step.items()} for step in history]

"""Sandbox and replay hardening: each limit of docs/abi.md against real wasmtime and real
worker processes. Every test asserts the documented fault kind and data, that the hostile
agent's siblings journal exactly what they journal without it, and that replay passes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from tests.wasm_helpers import (
    FakeHost,
    agent_wat,
    compile_wat,
    leb128,
    output_json,
    run,
    wasm,
)
from tests.wasm_hostile import (
    HOSTILE,
    INFER,
    LOG,
    SIBLINGS,
    SMALL_MEMORY,
    Hostile,
    calls,
    faults,
    siblings,
    team,
)
from workbench._wasm import _sandbox
from workbench._wasm._pool import WorkerPool
from workbench.errors import InvalidModule


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    """The siblings' records in a run without a hostile agent."""
    return siblings(team(tmp_path_factory.mktemp("control") / "j.wbj", None, workers=0))


# --- 1. the wall-clock backstop and replay ---------------------------------------------------


def test_a_journaled_timeout_replays_as_given(tmp_path: Path,
                                              control: list[dict[str, object]]) -> None:
    path = team(tmp_path / "j.wbj", HOSTILE["hang"], workers=1)
    assert [f["kind"] for f in faults(path)] == ["timeout"]
    assert faults(path)[0]["data"] == {"timeout_s": 0.3}
    assert [c["fn"] for c in calls(path)] == ["log", "random"]
    assert siblings(path) == control
    header = wb.read_journal(path).records[0]
    assert {a["name"]: a["limits"]["timeout_s"] for a in header["agents"]}["bad"] == 0.3
    # The agent loops forever under 10**15 fuel: replay passes only by not running it.
    assert wb.replay(path).steps == 2
    assert wb.replay(path, workers=1).steps == 2


SPIN = wasm(agent_wat("(local.set $t (i64.const 50000000)) (loop $l "
                      "(local.set $t (i64.sub (local.get $t) (i64.const 1))) "
                      "(br_if $l (i64.ne (local.get $t) (i64.const 0))))"))
SLOW_LIMITS = wb.Limits(fuel=10**9, timeout_s=1.0)  # about 30 ms of guest time per step


@contextmanager
def wall_clock_racing() -> Iterator[None]:
    """Advance this process's epoch as fast as it can: a machine whose every step takes
    far longer than it did when the run was recorded."""
    engine = _sandbox._state().engine
    stop = threading.Event()

    def race() -> None:
        while not stop.is_set():
            engine.increment_epoch()

    thread = threading.Thread(target=race, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_a_clean_step_replays_even_when_replay_runs_past_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "j.wbj"
    with wb.Run(seed=1, journal=path, workers=1) as run:
        run.add_agent("spin", SPIN, capabilities=[], limits=SLOW_LIMITS)
        run.run(2)
    assert faults(path, "spin") == [None]  # one step, then idle
    with wall_clock_racing():  # the same step, run with the backstop armed, times out ...
        armed = wb.Run(seed=1, journal=tmp_path / "armed.wbj", workers=0)
        armed.add_agent("spin", SPIN, capabilities=[], limits=SLOW_LIMITS)
        with armed:
            report = armed.step()
        assert report is not None and report.faults["spin"].kind == "timeout"
        assert wb.replay(path).steps == 1  # ... but replay runs it with fuel as its only bound


# --- every hostile agent: its fault, its siblings, replay, one journal, bounded memory -------


def _kib(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(f"no {field} in /proc/{pid}/status")


@contextmanager
def peak_rss(pids: list[int | str]) -> Iterator[dict[int | str, int]]:
    """Peak resident memory (bytes) of each process while the block runs (Linux: the peak
    is reset through /proc/PID/clear_refs first, then read from VmHWM)."""
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    peaks: dict[int | str, int] = {}
    yield peaks
    peaks.update({pid: _kib(pid, "VmHWM") * 1024 for pid in pids})


BASE_RSS = 96 << 20
"""Documented bound (docs/abi.md, Resident memory): over what it held before, a process
hosting a team peaks under this plus the memory limits of the agents it runs."""


def _team_memory(bad: Hostile) -> int:
    others = SIBLINGS + bad.senders
    return others * SMALL_MEMORY + bad.limits.get("memory_bytes", wb.Limits().memory_bytes)


def _check_fault(got: list[dict[str, Any]], bad: Hostile) -> None:
    if bad.kind is None:
        assert got == []
        return
    assert [f["kind"] for f in got] == [bad.kind]
    data = got[0]["data"]
    if bad.kind == "limit":
        assert set(data) == {"limit", "value", "max"}
    for key, want in bad.data.items():
        if want is None:
            assert data[key] > data["max"]
        else:
            assert data[key] == want, key


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_agent(name: str, tmp_path: Path, control: list[dict[str, object]]) -> None:
    """The documented fault, siblings unchanged, replay passing, the same journal bytes
    in-process and in the worker pool, and peak resident memory under the bound."""
    bad = HOSTILE[name]
    journals = {}
    for workers in (0, 1):
        pool = WorkerPool(1) if workers else None
        workers_pids = pool.pids() if pool is not None else []
        before = _kib("self", "VmRSS") * 1024
        with peak_rss(["self", *workers_pids]) as peaks:
            path = team(tmp_path / f"workers{workers}.wbj", bad, workers=pool or 0)
        if pool is not None:
            pool.close()
        journals[workers] = path.read_bytes()
        in_kernel = 0 if workers else _team_memory(bad)
        assert peaks["self"] - before < BASE_RSS + in_kernel, "kernel peak RSS"
        for pid in workers_pids:
            assert peaks[pid] < BASE_RSS + _team_memory(bad), "worker peak RSS"
    assert journals[0] == journals[1], "the journal depends on the executor"
    _check_fault([f for f in faults(path) if f is not None], bad)
    assert siblings(path) == control
    wb.replay(path)


# --- which WebAssembly proposals a module may use (docs/abi.md) -------------------------------

_MEMORY = '(memory (export "memory") 1)'
PROPOSALS_ON = {
    "tail calls": agent_wat("(call $f)", extra="(func $f (return_call $g)) (func $g)"),
    "extended constants": agent_wat(
        "", extra="(global $g i32 (i32.add (i32.const 1) (i32.const 2)))"),
    "SIMD": agent_wat("(drop (i32x4.extract_lane 0 (v128.const i32x4 1 2 3 4)))"),
    "bulk memory": agent_wat("(memory.fill (i32.const 0) (i32.const 0) (i32.const 4))"),
    "multi-value": agent_wat("(drop (drop (call $f)))",
                             extra="(func $f (result i32 i32) (i32.const 1) (i32.const 2))"),
    "reference types (funcref tables)": agent_wat(
        "(drop (table.grow $t (ref.null func) (i32.const 1)))", extra="(table $t 1 funcref)"),
    "sign extension": agent_wat("(drop (i32.extend8_s (i32.const 255)))"),
    "saturating float to int": agent_wat("(drop (i32.trunc_sat_f32_s (f32.const 1e30)))"),
}
PROPOSALS_OFF = {
    "multi-memory": agent_wat("", extra="(memory $m2 1)"),
    "threads": agent_wat("").replace(_MEMORY, '(memory (export "memory") 1 1 shared)'),
    "memory64": agent_wat("").replace(_MEMORY, '(memory (export "memory") i64 1)'),
    "custom page sizes": agent_wat("").replace(_MEMORY,
                                                '(memory (export "memory") 1 (pagesize 1))'),
    "relaxed SIMD": agent_wat(
        "(drop (i32x4.relaxed_trunc_f32x4_s (v128.const i32x4 1 2 3 4)))"),
    "exceptions": agent_wat("(try_table (throw $e))", extra="(tag $e)"),
    "GC": agent_wat("", extra="(type $s (struct (field i32))) "
                    "(func $f (drop (struct.new $s (i32.const 1))))"),
    "function references": agent_wat("", extra="(type $t (func)) (func $f (param (ref $t)))"),
    "externref (needs GC support)": agent_wat("", extra="(table $t 1 externref)"),
    "wide arithmetic": agent_wat("(drop (drop (i64.add128 (i64.const 1) (i64.const 1) "
                                 "(i64.const 1) (i64.const 1))))"),
}


@pytest.mark.parametrize("proposal", sorted(PROPOSALS_ON))
def test_a_module_using_an_enabled_proposal_loads_and_runs(proposal: str) -> None:
    agent = compile_wat(PROPOSALS_ON[proposal])
    assert output_json(run(agent)) == {"state": "ok", "status": "idle"}


@pytest.mark.parametrize("proposal", sorted(PROPOSALS_OFF))
def test_a_module_using_a_disabled_proposal_is_invalid(proposal: str) -> None:
    with pytest.raises(InvalidModule, match="does not validate"):
        compile_wat(PROPOSALS_OFF[proposal])


# --- 5. what compiling a module may cost -----------------------------------------------------


def _function_body_of(size: int) -> bytes:
    """A module whose one function body is ``size`` bytes of ``nop`` (checked before any
    compiling, so it need not be a whole ABI agent)."""
    body = b"\x00" + b"\x01" * (size - 2) + b"\x0b"  # no locals, nops, end
    code = leb128(1) + leb128(len(body)) + body
    return (b"\0asm\x01\x00\x00\x00" + b"\x01\x04\x01\x60\x00\x00" + b"\x03\x02\x01\x00"
            + b"\x0a" + leb128(len(code)) + code)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_function_over_the_size_limit_is_an_invalid_module(workers: int,
                                                             tmp_path: Path) -> None:
    assert len(_function_body_of(_sandbox.MAX_FUNCTION_BYTES)) < _sandbox.MAX_MODULE_BYTES
    with wb.Run(journal=tmp_path / "j.wbj", workers=workers) as run, \
            pytest.raises(InvalidModule, match=r"function body #0 is 1048577 bytes, over"):
        run.add_agent("big", _function_body_of(_sandbox.MAX_FUNCTION_BYTES + 1))


def test_a_module_over_the_size_limit_is_an_invalid_module(tmp_path: Path) -> None:
    huge = b"\0asm\x01\x00\x00\x00" + bytes(_sandbox.MAX_MODULE_BYTES)
    with wb.Run(journal=tmp_path / "j.wbj", workers=1) as run, \
            pytest.raises(InvalidModule, match=f"over the limit of {_sandbox.MAX_MODULE_BYTES}"):
        run.add_agent("huge", huge)


COMPILE_RSS = 256 << 20
"""Documented bound (docs/abi.md): compiling a function of MAX_FUNCTION_BYTES peaks its
process under BASE_RSS plus this."""


@pytest.fixture(scope="module")
def largest_function() -> bytes:
    """An agent with one costly function just under MAX_FUNCTION_BYTES (about 600,000
    instructions: some seconds of compiling)."""
    step = "(local.set $x (i32.add (local.get $x) (i32.const 7)))"
    body = "(local $x i32)" + step * (_sandbox.MAX_FUNCTION_BYTES // 7 - 100)
    module = wasm(agent_wat("", extra=f'(func $big (export "big") {body})'))
    assert _sandbox.MAX_FUNCTION_BYTES * 0.9 < len(module) < _sandbox.MAX_FUNCTION_BYTES
    return module


def test_the_pool_compiles_outside_the_kernel_within_the_bound(largest_function: bytes,
                                                               tmp_path: Path) -> None:
    with WorkerPool(1, cache_dir=tmp_path) as pool:
        pids: list[int | str] = ["self", *pool.pids()]
        before = _kib("self", "VmRSS") * 1024
        with peak_rss(pids) as peaks:
            agent = pool.executor(largest_function, name="big", capabilities=())
        assert peaks["self"] - before < 32 << 20  # the kernel only held the module's bytes
        assert peaks[pids[1]] < BASE_RSS + COMPILE_RSS
        agent.close()


# --- a refused infer request is journaled ----------------------------------------------------


def test_an_infer_request_that_is_not_json_is_journaled_as_refused(tmp_path: Path) -> None:
    refused = Hostile(wasm(agent_wat("(drop (call $infer (i32.const 2048) (i32.const 3)))",
                                     imports=INFER, extra='(data (i32.const 2048) "{x}")')),
                      None, {}, caps=("infer",))
    journals = [team(tmp_path / f"{w}.wbj", refused, workers=w).read_bytes() for w in (0, 1)]
    assert journals[0] == journals[1]
    path = tmp_path / "1.wbj"
    [call] = calls(path)
    assert (call["fn"], call["req"]) == ("infer", None)
    assert call["res"]["error"].startswith("infer request is not JSON")
    wb.replay(path)


def test_too_many_messages_is_blamed_on_max_messages(tmp_path: Path) -> None:
    with pytest.raises(wb.ConfigError, match=r"max_messages=100000\) must be at most 65536"):
        wb.Limits(max_messages=100_000)
    with wb.Run(journal=tmp_path / "j.wbj", workers=0) as run:  # the ceiling itself fits
        run.add_agent("a", SPIN, capabilities=[], limits=wb.Limits(max_messages=65_536))


# --- host calls: their cost is the host's, alloc's is the guest's ----------------------------


class _SlowLogHost(FakeHost):
    def log(self, text: bytes) -> None:
        time.sleep(0.03)  # a host slow to take each line: longer than the guest's budget
        super().log(text)


def test_the_hosts_work_on_a_host_call_does_not_count_against_the_backstop() -> None:
    body = _repeat(4, "(call $log (i32.const 8192) (i32.const 65536))")
    agent = compile_wat(agent_wat(body, imports=LOG, memory="2"))
    host = _SlowLogHost()
    out = run(agent, host=host, timeout_s=0.05)
    assert out.fault is None and len(host.logs()) == 4


def test_the_guests_alloc_called_by_the_host_counts_against_the_backstop() -> None:
    spinning_alloc = '(func $alloc (export "alloc") (param i32) (result i32) (loop $l (br $l)) ' \
        "(i32.const 0))"
    agent = compile_wat(agent_wat("", alloc=spinning_alloc))
    out = run(agent, fuel=1 << 62, timeout_s=0.05)
    assert out.fault is not None
    assert (out.fault.kind, dict(out.fault.data)) == ("timeout", {"timeout_s": 0.05})


def _repeat(n: int, instruction: str) -> str:
    return instruction * n

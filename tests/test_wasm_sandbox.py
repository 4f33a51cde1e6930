"""The wasmtime sandbox (real wasmtime): module checks, limits, faults, determinism, threads."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import wasmtime
from wasm_helpers import (
    ALL_CAPS,
    EXAMPLES,
    OK_OUTPUT,
    PAGE,
    FakeHost,
    RecordingHostCalls,
    agent_wat,
    compile_wat,
    example,
    output_json,
    request,
    run,
    wasm,
)

from workbench._types import Executor, Limits, Message, StepRequest
from workbench._wasm._abi import MAX_HOST_CALLS, MAX_HOSTCALL_BYTES, outcome_to_result
from workbench._wasm._cache import ModuleCache, cache_key
from workbench._wasm._local import LocalWasmExecutor
from workbench._wasm._sandbox import compile_module, engine_fingerprint
from workbench.errors import CapabilityError, ConfigError, InvalidModule, RunClosed

ROOT = Path(__file__).resolve().parent.parent
LOG = '(import "host" "log" (func $log (param i32 i32)))'
INFER = '(import "host" "infer" (func $infer (param i32 i32) (result i64)))'
NOW = '(import "host" "now" (func $now (result i64)))'


def fault_of(outcome: object) -> tuple[str, dict[str, object]]:
    f = outcome.fault  # type: ignore[attr-defined]
    assert f is not None, outcome
    return f.kind, dict(f.data)


# --- compiling: what is rejected, with which message ---------------------------------------

BAD_MODULES = {
    "no memory": ("(module (func (export \"alloc\") (param i32) (result i32) i32.const 0))",
                  "does not export a memory named 'memory'"),
    "no alloc": (agent_wat(alloc=""), "does not export the function 'alloc'"),
    "mistyped step": (agent_wat().replace("(result i64)\n    (local $t i64)",
                                          "(result i32)\n    (local $t i64)").replace(
        "(i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 30))", "i32.const 0"),
        "its export 'step' is (i32, i32) -> (i32)"),
    "mistyped _initialize": (agent_wat(extra='(func (export "_initialize") (param i32))'),
                             "its export '_initialize' is (i32) -> ()"),
    "other module": (agent_wat(imports='(import "env" "f" (func))'), "it imports env.f"),
    "unknown host function": (agent_wat(imports='(import "host" "open" (func))'),
                              "host.open, which ABI v1 does not have"),
    "mistyped host function": (agent_wat(imports='(import "host" "now" (func (result i32)))'),
                               "imports host.now as () -> (i32)"),
    "imported global": (agent_wat(imports='(import "host" "g" (global i32))'),
                        "not a function"),
    "unknown wasi function": (agent_wat(imports='(import "wasi_snapshot_preview1" "nope" '
                                        '(func))'), "cannot be linked"),
    "relaxed simd": (agent_wat(extra="(func (param v128) (result v128) "
                               "(i32x4.relaxed_trunc_f32x4_s (local.get 0)))"),
                     "does not validate"),
    "threads": (agent_wat(memory="1 1 shared"), "does not validate"),
}


@pytest.mark.parametrize("text,message", BAD_MODULES.values(), ids=BAD_MODULES.keys())
def test_invalid_modules_are_rejected_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidModule) as info:
        compile_wat(text)
    assert message in str(info.value)
    assert not isinstance(info.value, CapabilityError)


def test_not_wasm_at_all() -> None:
    with pytest.raises(InvalidModule, match="no \\\\0asm header"):
        compile_module(b"(module)", source="x", capabilities=())
    with pytest.raises(InvalidModule, match="does not validate"):
        compile_module(b"\0asm\x01\0\0\0\x01", source="x", capabilities=())


def test_ungranted_import_is_a_capability_error_naming_it() -> None:
    with pytest.raises(CapabilityError) as info:
        example("needs_infer.wat", caps=("log",))
    assert info.value.name == "infer" and info.value.granted == ("log",)
    assert "imports host.infer" in str(info.value)
    assert "granted only ['log']" in str(info.value)


def test_wasi_clock_needs_the_now_capability() -> None:
    text = agent_wat(imports='(import "wasi_snapshot_preview1" "clock_time_get" '
                     '(func (param i32 i64 i32) (result i32)))')
    with pytest.raises(CapabilityError, match=r"wasi_snapshot_preview1\.clock_time_get") as info:
        compile_wat(text, caps=("log",))
    assert info.value.name == "now"
    compile_wat(text, caps=("now",))


def test_unknown_capability_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown capabilities \\['network'\\]"):
        compile_wat(agent_wat(), caps=("network",))


def test_granting_more_than_imported_is_fine() -> None:
    assert output_json(run(compile_wat(agent_wat(), caps=ALL_CAPS))) == {"state": "ok",
                                                                      "status": "idle"}


# --- the documented example and the example agents -----------------------------------------


def test_the_wat_example_in_abi_md_runs() -> None:
    text = (ROOT / "docs" / "abi.md").read_text()
    wat = re.search(r"```wat\n(.*?)```", text, re.S)
    assert wat is not None
    host = FakeHost()
    out = run(compile_wat(wat.group(1), caps=("log",)), host=host)
    assert output_json(out) == {"state": None, "outbox": [], "status": "idle"}
    assert host.logs() == [b"hello from wat"]


def test_counter_uses_random_and_now_and_messages_itself() -> None:
    agent = example("counter.wat", caps=("log", "random", "now"))
    host = FakeHost()
    out = output_json(run(agent, request(41, agent="ctr"), host))
    rnd = next(v for name, v in host.calls if name == "random")
    assert out == {"state": 42, "status": "ready", "outbox": [
        {"to": "ctr", "payload": {"n": 41, "now": 1, "random": rnd}}]}
    assert [name for name, _ in host.calls] == ["now", "random", "log"]


def test_critic_asks_the_model_and_replies_to_the_sender() -> None:
    agent = example("critic.wat", caps=("infer", "log"))
    host = FakeHost(lambda req: b'{"text":"too long","finish_reason":"stop"}')
    msg = Message(sender="writer", seq=0, step=0, to="critic", payload={"draft": 'say "hi"'})
    raw = json.dumps(StepRequest("critic", 1, None, (msg,)).to_json(), sort_keys=True,
                     separators=(",", ":")).encode()
    out = output_json(run(agent, raw, host))
    assert out["outbox"] == [{"to": "writer",
                              "payload": {"text": "too long", "finish_reason": "stop"}}]
    infer_request = json.loads(next(arg for name, arg in host.calls if name == "infer"))
    assert infer_request["max_tokens"] == 32
    assert infer_request["prompt"] == "Critique briefly: " + raw.decode()
    assert output_json(run(agent, request(None), FakeHost())) == {"state": None,
                                                                 "status": "idle"}


# --- fuel ----------------------------------------------------------------------------------


def test_infinite_loop_runs_out_of_fuel_identically_100_times_siblings_unaffected() -> None:
    spin = example("spin.wat", caps=())
    counter = example("counter.wat")
    baseline = run(counter, request(7, agent="c"), FakeHost())
    outcomes = []
    for _ in range(100):
        outcomes.append(run(spin, fuel=20_000))
        sibling = run(counter, request(7, agent="c"), FakeHost())
        assert sibling == baseline
    assert all(out == outcomes[0] for out in outcomes)  # fault, detail, data, fuel used
    kind, data = fault_of(outcomes[0])
    assert kind == "out_of_fuel"
    assert data["fuel"] == data["consumed"] == outcomes[0].fuel_consumed == 20_000
    assert data["at"]  # the same instruction every time


def test_spinning_and_normal_agents_in_parallel_threads() -> None:
    spin, counter = example("spin.wat", caps=()), example("counter.wat")
    baseline = run(counter, request(1, agent="c"), FakeHost())

    def one(i: int) -> object:
        if i % 2:
            return run(spin, fuel=200_000).fault
        return run(counter, request(1, agent="c"), FakeHost())

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(40)))
    assert all(r == baseline for r in results[0::2])
    assert all(r == results[1] for r in results[1::2])
    assert results[1].kind == "out_of_fuel"  # type: ignore[attr-defined]


def test_fuel_consumed_is_deterministic_for_normal_steps() -> None:
    counter = example("counter.wat")
    used = [run(counter, request(5), FakeHost()).fuel_consumed for _ in range(5)]
    assert used == [used[0]] * 5 and used[0] > 0


def test_a_budget_below_what_the_step_needs_runs_out() -> None:
    # wasmtime checks fuel at function entries and loop headers, so a step can finish a
    # straight-line stretch slightly past its budget; deterministically so
    counter = example("counter.wat")
    need = run(counter, request(5), FakeHost()).fuel_consumed
    assert run(counter, request(5), FakeHost(), fuel=need).fault is None
    short = [run(counter, request(5), FakeHost(), fuel=need // 2) for _ in range(3)]
    assert fault_of(short[0])[0] == "out_of_fuel" and short == [short[0]] * 3


# --- memory --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 8])
def test_memory_limit_boundary_is_exact(n: int) -> None:
    bomb = example("memory_bomb.wat", caps=())
    # limit n pages: growing to n passes (at the limit), to n + 1 fails
    ok = run(bomb, request(n), memory_bytes=n * PAGE)
    assert output_json(ok)["state"] == "grown"
    assert ok.memory_size == n * PAGE and ok.memory_at_limit
    kind, data = fault_of(run(bomb, request(n + 1), memory_bytes=n * PAGE))
    assert kind == "memory_limit" and data["memory_size"] == n * PAGE
    # limit n - 1 pages: n fails, n - 1 passes
    assert fault_of(run(bomb, request(n), memory_bytes=(n - 1) * PAGE))[0] == "memory_limit"
    assert run(bomb, request(n - 1), memory_bytes=(n - 1) * PAGE).fault is None
    # a limit between pages rounds down: n pages fit, n + 1 do not
    assert run(bomb, request(n), memory_bytes=n * PAGE + 1000).fault is None
    assert fault_of(run(bomb, request(n + 1), memory_bytes=n * PAGE + 1000))[0] == \
        "memory_limit"


def test_memory_bomb_stops_at_the_limit_and_siblings_are_unaffected() -> None:
    bomb, counter = example("memory_bomb.wat", caps=()), example("counter.wat")
    baseline = run(counter, request(3, agent="c"), FakeHost())

    def one(i: int) -> object:
        if i % 2:
            return run(bomb, request(0), memory_bytes=64 * PAGE)
        return run(counter, request(3, agent="c"), FakeHost(), memory_bytes=64 * PAGE)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(16)))
    assert all(r == baseline for r in results[0::2])
    for r in results[1::2]:
        kind, data = fault_of(r)
        assert kind == "memory_limit"
        assert data["memory_size"] == data["memory_bytes"] == 64 * PAGE
        assert data["cause"]["data"]["code"] == "unreachable"  # type: ignore[index]


def test_a_failed_grow_the_guest_survives_is_not_a_fault() -> None:
    text = agent_wat("(drop (memory.grow (i32.const 1000)))")
    out = run(compile_wat(text), memory_bytes=16 * PAGE)
    assert out.fault is None and not out.memory_at_limit and out.memory_size == PAGE


def test_initial_memory_over_the_limit() -> None:
    kind, data = fault_of(run(compile_wat(agent_wat(memory="4")), memory_bytes=2 * PAGE))
    assert kind == "memory_limit" and data["cause"] == "initial memory"


# --- traps and malformed output ------------------------------------------------------------


@pytest.mark.parametrize("how,code", [
    (0, "unreachable"), (1, "memory_out_of_bounds"), (2, "stack_overflow"),
    (3, "integer_division_by_zero"), (4, "indirect_call_to_null")])
def test_traps(how: int, code: str) -> None:
    agent = example("traps.wat", caps=())
    first, second = run(agent, request(how)), run(agent, request(how))
    assert first == second  # the same fault, message and site every time
    kind, data = fault_of(first)
    assert kind == "trap" and data["code"] == code and data["message"]


@pytest.mark.parametrize("how,kind", [(0, "malformed_output"), (1, "malformed_output"),
                                      (2, "malformed_output"), (3, "malformed_output"),
                                      (4, "malformed_output"), (5, "malformed_output"),
                                      (6, "limit")])
def test_malformed_outputs(how: int, kind: str) -> None:
    outcome = run(example("malformed.wat", caps=()), request(how))
    result = outcome_to_result(outcome, max_output_bytes=1 << 20)
    assert result.fault is not None and result.fault.kind == kind


def test_output_limit_is_exact() -> None:
    agent = compile_wat(agent_wat())
    assert run(agent, max_output_bytes=len(OK_OUTPUT)).fault is None
    kind, data = fault_of(run(agent, max_output_bytes=len(OK_OUTPUT) - 1))
    assert kind == "limit" and data == {"limit": "max_output_bytes", "value": len(OK_OUTPUT),
                                        "max": len(OK_OUTPUT) - 1}


def test_alloc_failing_for_the_input() -> None:
    text = agent_wat(alloc='(func (export "alloc") (param i32) (result i32) i32.const 0)')
    kind, data = fault_of(run(compile_wat(text)))
    assert kind == "malformed_output" and data["reason"] == "alloc_failed"


def test_proc_exit_is_a_trap_with_the_exit_code() -> None:
    text = agent_wat("(call $exit (i32.const 3))", imports='(import "wasi_snapshot_preview1" '
                     '"proc_exit" (func $exit (param i32)))')
    kind, data = fault_of(run(compile_wat(text)))
    assert kind == "trap" and data["exit_code"] == 3


# --- the wall-clock backstop ---------------------------------------------------------------


def test_timeout_stops_a_spinning_guest() -> None:
    out = run(example("spin.wat", caps=()), fuel=1 << 62, timeout_s=0.05)
    kind, data = fault_of(out)
    assert kind == "timeout" and data == {"timeout_s": 0.05}


def test_time_blocked_in_host_calls_does_not_count() -> None:
    released = threading.Event()

    def slow_infer(req: bytes) -> bytes:
        released.wait(0.3)  # an engine taking longer than the guest's whole budget
        return b'{"text":"late"}'

    text = agent_wat('(drop (call $infer (i32.const 1024) (i32.const 2)))', imports=INFER)
    out = run(compile_wat(text), host=FakeHost(slow_infer), timeout_s=0.1)
    assert out.fault is None


# --- host calls ----------------------------------------------------------------------------


def test_infer_writes_the_result_into_guest_memory() -> None:
    # the guest logs the result it got back: (ptr, len) unpacked from the i64
    body = """(local.set $t (call $infer (i32.const 1024) (i32.const 5)))
    (call $log (i32.wrap_i64 (i64.shr_u (local.get $t) (i64.const 32)))
               (i32.wrap_i64 (local.get $t)))"""
    host = FakeHost(lambda req: b'{"text":"\xc3\xa9"}')
    out = run(compile_wat(agent_wat(body, imports=INFER + LOG)), host=host)
    assert out.fault is None
    assert host.calls[0] == ("infer", OK_OUTPUT[:5])
    assert host.logs() == ['{"text":"é"}'.encode()]


def test_infer_returns_zero_when_alloc_fails() -> None:
    alloc = """(global $n (mut i32) (i32.const 0))
  (func (export "alloc") (param i32) (result i32)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (if (result i32) (i32.eq (global.get $n) (i32.const 1))
      (then (i32.const 4096)) (else (i32.const 0))))"""
    body = """(if (i64.ne (call $infer (i32.const 1024) (i32.const 2)) (i64.const 0))
      (then unreachable))"""
    assert run(compile_wat(agent_wat(body, imports=INFER, alloc=alloc))).fault is None


def test_host_call_with_a_bad_pointer_stops_the_step() -> None:
    body = """(call $log (i32.const 65530) (i32.const 100))
    (call $log (i32.const 0) (i32.const 1))"""
    host = FakeHost()
    kind, data = fault_of(run(compile_wat(agent_wat(body, imports=LOG)), host=host))
    assert kind == "trap" and data["code"] == "memory_out_of_bounds"
    assert host.logs() == []  # the guest never got to its second call


def test_host_call_payload_limit() -> None:
    body = f"(call $log (i32.const 0) (i32.const {MAX_HOSTCALL_BYTES + 1}))"
    kind, data = fault_of(run(compile_wat(agent_wat(body, imports=LOG))))
    assert kind == "limit" and data["limit"] == "max_hostcall_bytes"


def test_host_call_count_limit() -> None:
    body = f"""(local.set $t (i64.const {MAX_HOST_CALLS + 5}))
    (loop $l (drop (call $now))
      (local.set $t (i64.sub (local.get $t) (i64.const 1)))
      (br_if $l (i64.ne (local.get $t) (i64.const 0))))"""
    kind, data = fault_of(run(compile_wat(agent_wat(body, imports=NOW))))
    assert kind == "limit" and data["limit"] == "max_host_calls"


def test_random_is_passed_as_64_bits() -> None:
    body = """(i64.store (i32.const 0) (call $random))
    (call $log (i32.const 0) (i32.const 8))"""
    imports = '(import "host" "random" (func $random (result i64)))' + LOG
    host = FakeHost()
    run(compile_wat(agent_wat(body, imports=imports)), host=host)
    value = host.calls[0][1]
    assert value >= 1 << 63  # exercises the unsigned -> i64 conversion
    assert host.logs() == [struct.pack("<Q", value)]


def test_host_failure_is_raised_not_blamed_on_the_guest() -> None:
    def broken(req: bytes) -> bytes:
        raise RuntimeError("pipe to the kernel closed")

    agent = compile_wat(agent_wat("(drop (call $infer (i32.const 0) (i32.const 1)))",
                                  imports=INFER))
    with pytest.raises(RuntimeError, match="pipe to the kernel closed"):
        run(agent, host=FakeHost(broken))
    # nothing lingers: the next steps report their own outcomes
    assert run(agent).fault is None
    assert fault_of(run(example("traps.wat", caps=()), request(0)))[0] == "trap"


def test_initialize_runs_before_step_and_start_may_not_call_the_host() -> None:
    init = '(func (export "_initialize") (call $log (i32.const 1024) (i32.const 1)))'
    host = FakeHost()
    assert run(compile_wat(agent_wat("(call $log (i32.const 1025) (i32.const 1))",
                                     imports=LOG, extra=init)), host=host).fault is None
    assert host.logs() == [b"{", b'"']
    start = '(func $s (call $log (i32.const 0) (i32.const 1))) (start $s)'
    kind, data = fault_of(run(compile_wat(agent_wat(imports=LOG, extra=start))))
    assert kind == "trap" and data["code"] == "host_call_in_start"


def test_wasi_is_sandboxed_and_deterministic() -> None:
    imports = LOG + """
  (import "wasi_snapshot_preview1" "random_get" (func $rg (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $ct (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $po (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $es (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fw (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $po2 (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))"""
    body = """(i32.store (i32.const 100) (call $rg (i32.const 0) (i32.const 12)))
    (call $log (i32.const 0) (i32.const 12))
    (i32.store (i32.const 104) (call $ct (i32.const 1) (i64.const 1) (i32.const 16)))
    (call $log (i32.const 16) (i32.const 8))
    (i32.store (i32.const 108) (call $po (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 32)))
    (i32.store (i32.const 112) (call $es (i32.const 40) (i32.const 44)))
    (i32.store (i32.const 48) (i32.const 1024))
    (i32.store (i32.const 52) (i32.const 4))
    (i32.store (i32.const 116) (call $fw (i32.const 1) (i32.const 48) (i32.const 1) (i32.const 56)))
    (i32.store (i32.const 120) (call $po2 (i32.const 3) (i32.const 0) (i32.const 1024)
      (i32.const 4) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 60)))
    (i32.store (i32.const 124) (call $rg (i32.const 0) (i32.const 257)))
    (call $log (i32.const 40) (i32.const 8))
    (call $log (i32.const 100) (i32.const 28))"""
    host = FakeHost()
    out = run(compile_wat(agent_wat(body, imports=imports), caps=("log", "random", "now")),
              host=host)
    assert out.fault is None
    randoms = [v for name, v in host.calls if name == "random"]
    random_bytes, clock, environ, errnos = host.logs()
    assert len(randoms) == 2  # 12 bytes = two 64-bit draws
    assert random_bytes == b"".join(struct.pack("<Q", v) for v in randoms)[:12]
    assert clock == struct.pack("<Q", 1)  # host.now(), not the wall clock
    assert environ == b"\0" * 8  # no environment variables
    rg, ct, po, es, fw, open_, big = struct.unpack("<7I", errnos)
    assert (rg, ct, po, es, fw) == (0, 0, 58, 0, 0)  # poll_oneoff: ENOTSUP, no sleeping
    assert open_ != 0  # no preopened directory: fd 3 does not exist
    assert big == 28  # random_get over 256 bytes: EINVAL


# --- threads -------------------------------------------------------------------------------


def test_guest_code_runs_without_the_gil() -> None:
    spin, counter = example("spin.wat", caps=()), example("counter.wat")
    spinning: list[object] = []
    worker = threading.Thread(target=lambda: spinning.append(
        run(spin, fuel=1 << 62, timeout_s=1.0)))
    worker.start()
    try:
        for i in range(20):  # these need the GIL between guest calls
            assert run(counter, request(i), FakeHost()).fault is None
        assert worker.is_alive()  # ... and got it while the spinner was still in guest code
    finally:
        worker.join()
    assert fault_of(spinning[0])[0] == "timeout"


def test_concurrent_steps_match_sequential_ones() -> None:
    counter = example("counter.wat")
    expected = [run(counter, request(i, agent=f"a{i}"), FakeHost()) for i in range(32)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: run(counter, request(i, agent=f"a{i}"), FakeHost()),
                            range(32)))
    assert got == expected


def test_outcomes_are_plain_data() -> None:
    for outcome in (run(example("counter.wat"), request(1), FakeHost()),
                    run(example("memory_bomb.wat", caps=()), request(0), memory_bytes=4 * PAGE)):
        assert pickle.loads(pickle.dumps(outcome)) == outcome
        if outcome.fault is not None:
            json.dumps(outcome.fault.to_json(), allow_nan=False)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_engine_and_backstop() -> None:
    # the parent has compiled (wasmtime's compiler thread pool is up) and has a ticker thread
    spin = wasm((EXAMPLES / "spin.wat").read_text())
    critic = wasm((EXAMPLES / "critic.wat").read_text())
    run(compile_module(spin, source="spin", capabilities=()), fuel=1000)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compile and run with its own engine and ticker
        code = 1
        try:
            signal.alarm(60)  # never hang the test run, whatever happens here
            compile_module(critic, source="critic", capabilities=ALL_CAPS)
            agent = compile_module(spin, source="spin", capabilities=())
            out = run(agent, fuel=10_000_000_000, timeout_s=0.05)  # ~seconds of fuel
            os.write(write_end, json.dumps(out.fault.to_json()).encode())  # type: ignore
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as child:
        reported = child.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert json.loads(reported)["kind"] == "timeout"


# --- the compiled-module cache -------------------------------------------------------------


def test_compiled_modules_are_cached_and_damage_is_recompiled(tmp_path: Path) -> None:
    binary = wasm((EXAMPLES / "counter.wat").read_text())
    agent = compile_module(binary, source="c", capabilities=ALL_CAPS, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.cwasm"))
    assert [f.name.split("-")[0] for f in files] == [agent.sha256]
    cache = ModuleCache(tmp_path)
    key = cache_key(agent.sha256, engine_fingerprint())

    def must_not_compile() -> wasmtime.Module:
        raise AssertionError("should have been loaded from the cache")

    from workbench._wasm._sandbox import _state

    assert cache.load_or_compile(_state().engine, key, must_not_compile) is not None
    # a damaged file is detected by its checksum and replaced
    blob = bytearray(files[0].read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    files[0].write_bytes(bytes(blob))
    again = compile_module(binary, source="c", capabilities=ALL_CAPS, cache_dir=tmp_path)
    assert run(again, request(1), FakeHost()) == run(agent, request(1), FakeHost())
    assert cache.load_or_compile(_state().engine, key, must_not_compile) is not None
    assert cache_key(agent.sha256, "wasmtime=0.0") != key


# --- LocalWasmExecutor ---------------------------------------------------------------------


def test_local_executor_runs_a_step_through_host_calls() -> None:
    ex = LocalWasmExecutor(EXAMPLES / "counter.wat", name="ctr",
                           limits=Limits(fuel=1_000_000), capabilities=("log", "random", "now"))
    assert isinstance(ex, Executor)
    calls = RecordingHostCalls()
    result = ex.step(StepRequest("ctr", 3, 9, ()), calls)
    assert result.fault is None and result.state == 10
    assert result.outbox[0].payload == {"n": 9, "now": 3_000_000_001, "random": (1 << 64) - 1}
    assert [c[0] for c in calls.calls] == ["now", "random", "log"]
    ident = ex.identity()
    assert ident.kind == "wasm" and ident.hash == ex.wasm_sha256
    assert ident.config["fuel"] == 1_000_000
    assert ident.config["capabilities"] == ["log", "random", "now"]
    ex.close()
    ex.close()
    with pytest.raises(RunClosed):
        ex.step(StepRequest("ctr", 4, 10, ()), calls)


def test_local_executor_gives_rejected_infer_requests_back_as_errors() -> None:
    def reject(req: object) -> dict[str, object]:
        raise ValueError("'prompt' must be a string")

    with LocalWasmExecutor(EXAMPLES / "needs_infer.wat", name="n",
                           capabilities=("infer",)) as ex:
        result = ex.step(StepRequest("n", 0, None, ()), RecordingHostCalls(reject))
    assert result.state == {"error": "'prompt' must be a string"} and result.status == "done"


def test_local_executor_sources(tmp_path: Path) -> None:
    text = agent_wat()
    binary = wasm(text)
    (tmp_path / "a.wasm").write_bytes(binary)
    (tmp_path / "a.wat").write_text(text)
    hashes = {LocalWasmExecutor(src, name="a").wasm_sha256
              for src in (text, binary, tmp_path / "a.wasm", str(tmp_path / "a.wat"))}
    assert len(hashes) == 1
    with pytest.raises(ConfigError, match="does not exist"):
        LocalWasmExecutor(tmp_path / "missing.wasm", name="a")
    with pytest.raises(InvalidModule, match="does not assemble"):
        LocalWasmExecutor("(module (func $f (i32.bogus)))", name="a")
    with pytest.raises(InvalidModule, match="neither a wasm binary nor WAT"):
        LocalWasmExecutor(b"\xff\xfe", name="a")


def test_local_executor_faults_are_results() -> None:
    ex = LocalWasmExecutor(EXAMPLES / "spin.wat", name="s", limits=Limits(fuel=10_000),
                           capabilities=())
    result = ex.step(StepRequest("s", 0, None, ()), RecordingHostCalls())
    assert result.fault is not None and result.fault.kind == "out_of_fuel"


@pytest.mark.toolchain
def test_the_c_example_in_abi_md_builds_and_runs(tmp_path: Path) -> None:
    from tests.wasm_examples import build_or_fail

    text = (ROOT / "docs" / "abi.md").read_text()
    c_source = re.search(r"```c\n(.*?)```", text, re.S)
    assert c_source is not None
    (tmp_path / "agent.c").write_text(c_source.group(1))
    module = build_or_fail(tmp_path / "agent.c", tmp_path / "agent.wasm")
    calls = RecordingHostCalls()
    with LocalWasmExecutor(module, name="c", capabilities=("log",)) as ex:
        result = ex.step(StepRequest("c", 0, None, ()), calls)
    assert (result.fault, result.state, result.status) == (None, None, "idle")
    assert calls.calls == [("log", "hi")]


@pytest.mark.parametrize("limits", [{"fuel": 0}, {"fuel": 1 << 63}, {"memory_bytes": 0},
                                    {"timeout_s": 0.0}, {"max_output_bytes": -1}])
def test_out_of_range_limits_are_rejected(limits: dict[str, int | float]) -> None:
    with pytest.raises(ValueError, match="bad limits"):
        run(compile_wat(agent_wat()), **limits)  # type: ignore[arg-type]


def test_a_run_journals_wasm_faults_and_replays_them(tmp_path: Path) -> None:
    import workbench as wb

    journal = tmp_path / "run.wbj"
    run_ = wb.Run(seed=3, policy="parallel", workers=0, journal=journal)
    run_.add_agent("ctr", EXAMPLES / "counter.wat", capabilities=["random", "now", "log"])
    run_.add_agent("spin", EXAMPLES / "spin.wat", capabilities=[], fuel=50_000)
    run_.add_agent("bomb", EXAMPLES / "memory_bomb.wat", capabilities=[], memory="256KiB")
    run_.connect("ctr", "ctr")
    first = run_.step()
    assert first is not None
    assert {name: f.kind for name, f in first.faults.items()} == {
        "spin": "out_of_fuel", "bomb": "memory_limit"}
    run_.step()
    assert run_.state_of("ctr") == 2  # the sibling went on
    assert (run_.status_of("spin"), run_.status_of("bomb")) == ("faulted", "faulted")
    run_.close()
    wb.replay(journal)  # raises NondeterminismError at the first divergence

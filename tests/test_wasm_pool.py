"""The WebAssembly worker pool against the real sandbox, real processes and real wasmtime."""

from __future__ import annotations

import random
import socket
import threading
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.pool_agents import CAPS, counter_wasm, counter_wat, drive, marked
from workbench._types import JSON, Executor, HostCalls, Limits, StepRequest
from workbench._wasm import _worker
from workbench._wasm._frames import FrameReader, FrameWriter, Kind, pack, unpack
from workbench._wasm._local import LocalWasmExecutor
from workbench._wasm._pool import PooledWasmExecutor, WorkerPool
from workbench.errors import (
    CapabilityError,
    ConfigError,
    FrameTooLarge,
    InvalidModule,
    RunClosed,
)
from workbench.testing import FakeEngine

WAIT_S = 30.0  # an upper bound on waits that only a broken pool would reach


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_results_equal_local_executor_and_do_not_depend_on_pool_size(cache: Path) -> None:
    wasm = counter_wasm(spin=2000)
    names = [f"agent{i}" for i in range(10)]
    local = {n: LocalWasmExecutor(wasm, name=n, capabilities=CAPS) for n in names}
    expected = drive(local, 5, seed=42)
    assert len({step["agent0"][0] for step in expected}) == 5  # states move every step
    assert expected[4]["agent0"][0] != expected[4]["agent1"][0]  # and differ per agent
    for size in (1, 2, 3):
        with WorkerPool(size, cache_dir=cache) as pool:
            pooled = {n: pool.executor(wasm, name=n, capabilities=CAPS) for n in names}
            assert {pool.worker_of(e) for e in pooled.values()} == set(range(size))
            assert drive(pooled, 5, seed=42) == expected
            assert [pooled[n].identity() for n in names] == [local[n].identity() for n in names]
            assert pool.restarts == 0


def test_other_seed_other_results(cache: Path) -> None:
    with WorkerPool(2, cache_dir=cache) as pool:
        executors = {f"a{i}": pool.executor(counter_wasm(), name=f"a{i}", capabilities=CAPS)
                     for i in range(4)}
        assert drive(executors, 2, seed=1) != drive(executors, 2, seed=2)


class _Host:
    """HostCalls for one agent: ``infer`` parks until ``released`` is set (and says so in
    ``parked``); ``log`` sets ``releases`` if given."""

    def __init__(self, released: threading.Event | None = None,
                 releases: threading.Event | None = None) -> None:
        self.released = released or threading.Event()
        self.releases = releases
        self.parked = threading.Event()

    def infer(self, request: Mapping[str, JSON]) -> dict[str, JSON]:
        self.parked.set()
        if not self.released.wait(WAIT_S):
            raise AssertionError("no other agent ran while this one was parked in infer")
        return {"text": "ok", "tokens": [], "finish_reason": "stop", "provider": "fake"}

    def log(self, text: str) -> None:
        if self.releases is not None:
            self.releases.set()

    def random(self) -> int:
        return 7

    def now(self) -> int:
        return 0

    def restart(self) -> None:
        pass


def test_agent_blocked_in_infer_does_not_block_another_agent_of_its_worker(cache: Path) -> None:
    release = threading.Event()
    with WorkerPool(1, cache_dir=cache) as pool:
        asker = pool.executor(counter_wasm(infer=True), name="asker")
        logger = pool.executor(counter_wasm(), name="logger", capabilities=CAPS)
        assert pool.worker_of(asker) == pool.worker_of(logger) == 0
        asker_host = _Host(released=release)
        with ThreadPoolExecutor(1) as thread:
            asking = thread.submit(asker.step, StepRequest("asker", 0, None, ()), asker_host)
            assert asker_host.parked.wait(WAIT_S)  # the asker is inside infer, in the worker
            result = logger.step(StepRequest("logger", 0, None, ()), _Host(releases=release))
            assert result.fault is None and isinstance(result.state, int)
            assert asking.result(WAIT_S).fault is None


def test_inference_barrier_with_every_agent_on_one_worker(cache: Path) -> None:
    wasm = counter_wasm(infer=True, spin=5000)
    caps = ("infer", *CAPS)
    names = [f"agent{i}" for i in range(7)]
    local_engine, pooled_engine = FakeEngine(), FakeEngine()
    local = {n: LocalWasmExecutor(wasm, name=n, capabilities=caps) for n in names}
    expected = drive(local, 3, seed=8, caps=caps, engine=local_engine)
    with WorkerPool(1, cache_dir=cache) as pool:
        pooled = {n: pool.executor(wasm, name=n, capabilities=caps) for n in names}
        assert drive(pooled, 3, seed=8, caps=caps, engine=pooled_engine) == expected
    assert pooled_engine.batches == local_engine.batches == [names[:4], names[4:]] * 3


@pytest.mark.parametrize("failing", ["log", "random"])
def test_host_failure_is_reraised_like_the_local_executor(cache: Path, failing: str) -> None:
    class Failing(_Host):
        calls: list[str]

        def log(self, text: str) -> None:
            self.calls.append("log")
            if failing == "log":
                raise RuntimeError("engine on fire")

        def random(self) -> int:
            self.calls.append("random")
            if failing == "random":
                raise RuntimeError("engine on fire")
            return 5

    wasm = counter_wasm()
    local = LocalWasmExecutor(wasm, name="a", capabilities=CAPS)
    with WorkerPool(1, cache_dir=cache) as pool:
        pooled = pool.executor(wasm, name="a", capabilities=CAPS)
        seen = []
        for executor in (local, pooled):
            host = Failing()
            host.calls = []
            with pytest.raises(RuntimeError, match="engine on fire"):
                executor.step(StepRequest("a", 0, None, ()), host)
            seen.append(host.calls)
        assert seen[0] == seen[1]  # no host call after the failing one reaches the host
        assert pooled.step(StepRequest("a", 1, 3, ()), _Host()).fault is None  # still usable


def test_guest_faults_come_back_as_faults(cache: Path) -> None:
    wasm = counter_wasm(spin=1_000_000)
    limits = Limits(fuel=50_000)
    local = LocalWasmExecutor(wasm, name="a", capabilities=CAPS, limits=limits)
    host = _Host()
    expected = local.step(StepRequest("a", 0, None, ()), host)
    assert expected.fault is not None and expected.fault.kind == "out_of_fuel"
    with WorkerPool(1, cache_dir=cache) as pool:
        pooled = pool.executor(wasm, name="a", capabilities=CAPS, limits=limits)
        assert pooled.step(StepRequest("a", 0, None, ()), host) == expected


def test_invalid_modules_raise_and_the_pool_goes_on(cache: Path) -> None:
    with WorkerPool(1, cache_dir=cache) as pool:
        with pytest.raises(InvalidModule, match="does not validate"):
            pool.executor(b"\0asm\x01\0\0\0\x01\xff", name="bad")
        with pytest.raises(CapabilityError) as caught:
            pool.executor(counter_wasm(infer=True), name="x", capabilities=CAPS)
        assert caught.value.name == "infer" and caught.value.via == "host.infer"
        with pytest.raises(InvalidModule, match="WAT"):
            pool.executor(b"(module", name="wat")
        ok = pool.executor(counter_wat().encode(), name="ok", capabilities=CAPS)
        assert drive({"ok": ok}, 1, seed=0)[0]["ok"][2] is None
        assert pool.restarts == 0


@pytest.fixture
def fake_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_worker, "SANDBOX", "tests.pool_fake_sandbox")


def test_module_that_crashes_the_compiler_is_invalid_not_fatal(cache: Path,
                                                               fake_compiler: None) -> None:
    with WorkerPool(1, cache_dir=cache) as pool:
        survivor = pool.executor(counter_wasm(), name="survivor", capabilities=CAPS)
        before = drive({"survivor": survivor}, 2, seed=3)
        with pytest.raises(InvalidModule, match=r"crashed the worker process \(signal 6\)"):
            pool.executor(marked(b"crash-the-compiler"), name="evil", capabilities=CAPS)
        assert pool.restarts == 2  # the crash, and the one retry that proves it was no fluke
        assert drive({"survivor": survivor}, 2, seed=3) == before
        assert "agents=1" in repr(pool)


def test_module_that_hangs_the_compiler_is_invalid_after_the_time_limit(
        cache: Path, fake_compiler: None) -> None:
    with WorkerPool(1, cache_dir=cache, compile_timeout_s=0.5) as pool:
        with pytest.raises(InvalidModule, match=r"longer than 0\.5 s"):
            pool.executor(marked(b"hang-the-compiler"), name="evil", capabilities=CAPS)
        ok = pool.executor(counter_wasm(), name="ok", capabilities=CAPS)
        assert drive({"ok": ok}, 1, seed=0)[0]["ok"][2] is None
        assert pool.restarts == 1


def test_close_is_idempotent_and_use_after_close_raises(cache: Path) -> None:
    pool = WorkerPool(2, cache_dir=cache)
    executor = pool.executor(counter_wasm(), name="a", capabilities=CAPS)
    assert isinstance(executor, Executor) and isinstance(executor, PooledWasmExecutor)
    text = repr(pool)
    assert "workers=2" in text and "agents=1" in text and "restarts=0" in text
    pool.close()
    pool.close()
    assert pool.closed and "closed" in repr(pool)
    with pytest.raises(RunClosed):
        pool.executor(counter_wasm(), name="b", capabilities=CAPS)
    with pytest.raises(RunClosed):
        executor.step(StepRequest("a", 0, None, ()),
                      _Host())


def test_executor_close_unloads_its_agent(cache: Path) -> None:
    with WorkerPool(1, cache_dir=cache) as pool:
        a = pool.executor(counter_wasm(), name="a", capabilities=CAPS)
        a.close()
        a.close()
        assert "agents=0" in repr(pool)
        with pytest.raises(RunClosed):
            a.step(StepRequest("a", 0, None, ()),
                   _Host())


def test_agents_come_and_go_while_their_module_is_shared(cache: Path) -> None:
    wasm = counter_wasm()
    with WorkerPool(1, cache_dir=cache) as pool:
        first = [pool.executor(wasm, name=f"a{i}", capabilities=CAPS) for i in range(3)]
        assert {e.identity().hash for e in first} == {first[0].identity().hash}
        for executor in first:
            executor.close()  # the worker drops the module with its last agent
        again = pool.executor(wasm, name="b", capabilities=CAPS)  # so its bytes go again
        assert drive({"b": again}, 2, seed=6) == drive(
            {"b": LocalWasmExecutor(wasm, name="b", capabilities=CAPS)}, 2, seed=6)
        assert pool.restarts == 0 and "agents=1" in repr(pool)


def test_default_size_is_the_core_count(cache: Path) -> None:
    import os

    with WorkerPool(cache_dir=cache) as pool:
        assert pool.size == (os.cpu_count() or 1)
        assert len(set(pool.pids())) == pool.size
        assert all(t < 1.0 for t in pool.ping())


def test_frames_round_trip_and_are_bounded() -> None:
    a, b = socket.socketpair()
    with a, b:
        writer, reader = FrameWriter(a, max_frame=1024), FrameReader(b, max_frame=1024)
        writer.write(Kind.STEP, 7, pack({"agent": 3}, b"\x00" * 1000))
        frame = reader.read()
        assert frame is not None and frame.kind is Kind.STEP and frame.rid == 7
        assert unpack(frame.payload) == ({"agent": 3}, b"\x00" * 1000)
        with pytest.raises(FrameTooLarge, match="over the worker frame limit of 1024"):
            writer.write(Kind.STEP, 8, b"x" * 1025)
        FrameWriter(a).write(Kind.RESULT, 9, b"y" * 2000)  # a peer without the bound
        with pytest.raises(FrameTooLarge):
            reader.read()
        a.close()
        assert FrameReader(b).read() is None  # end of stream


def test_too_large_step_input_is_a_limit_fault_before_sending(cache: Path) -> None:
    with WorkerPool(1, cache_dir=cache, max_frame=4096) as pool:
        with pytest.raises(ConfigError, match="max_input_bytes"):
            pool.executor(counter_wasm(), name="a", capabilities=CAPS)
        a = pool.executor(counter_wasm(), name="a", capabilities=CAPS,
                          limits=Limits(max_input_bytes=3000))
        host: HostCalls = _Host()
        result = a.step(StepRequest("a", 0, "x" * 5000, ()), host)
        assert result.fault is not None and result.fault.kind == "limit"
        assert dict(result.fault.data) == {"limit": "max_input_bytes", "value": 5044,
                                           "max": 3000}
        assert a.step(StepRequest("a", 0, 1, ()), host).fault is None


def test_seeded_mutations_compile_in_the_worker_and_fail_only_as_invalid_module(
        cache: Path) -> None:
    rng = random.Random(20261126)
    original = counter_wasm()
    outcomes: Counter[str] = Counter()
    with WorkerPool(2, cache_dir=cache) as pool:
        for i in range(300):
            data = bytearray(original)
            if rng.random() < 0.3:
                data = data[: rng.randrange(8, len(data))]
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(8, len(data))] ^= 1 << rng.randrange(8)
            try:
                executor = pool.executor(bytes(data), name=f"m{i}", capabilities=CAPS)
            except InvalidModule as exc:
                assert exc.reason, "an InvalidModule says why"
                outcomes["invalid"] += 1
                continue
            result = executor.step(StepRequest(f"m{i}", 0, None, ()), _Host())
            outcomes["fault" if result.fault is not None else "ran"] += 1
            executor.close()
        assert pool.restarts == 0
    assert outcomes["invalid"] > 150 and sum(outcomes.values()) == 300

"""Sandboxed Python agents (run.add_agent(..., sandbox=True)) against the real runtime
component under real wasmtime: capture, runs, replay, faults, limits and hostile probes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from tests.pysandbox_helpers import cell, faults, python_runtime, records
from workbench._agents import stored_module
from workbench._pysandbox import _runtime
from workbench._pysandbox._package import AgentPackage, Piece
from workbench._pysandbox._runtime import runtime_path
from workbench._wasm._pool import WorkerPool
from workbench.errors import ConfigError, InvalidModule
from workbench.testing import FakeEngine

__all__ = ["python_runtime"]  # the session fixture: the runtime is built once

TEAM = '''\
import json

ROUNDS = 3
GREETING = {"text": "hello", "tags": ("a", "b")}


def shout(text):
    return text.upper() + "!"


class Tally:
    def __init__(self, seen):
        self.seen = seen

    def add(self, n):
        return Tally(self.seen + [n])


def writer(state, inbox, host):
    tally = Tally(state["seen"]).add(host.random() % 10)
    host.log(json.dumps({"round": len(tally.seen)}))
    status = "done" if len(tally.seen) >= ROUNDS else "ready"
    return {"state": {"seen": tally.seen},
            "outbox": [("critic", {"draft": shout(GREETING["text"])})], "status": status}


def critic(state, inbox, host):
    reply = host.infer({"prompt": inbox[-1]["payload"]["draft"], "max_tokens": 4})
    return {"state": {"n": state["n"] + 1, "said": reply["text"]}, "outbox": [],
            "status": "idle"}
'''


def team(path: Path, workers: int | WorkerPool | None, **kinds: bool) -> wb.Run:
    ns = cell(TEAM)
    run = wb.Run(seed=3, journal=path, model=FakeEngine(), workers=workers)
    run.add_agent("writer", ns["writer"], sandbox=kinds.get("writer", True),
                  state={"seen": []}, capabilities=["log", "random"])
    run.add_agent("critic", ns["critic"], sandbox=kinds.get("critic", True), state={"n": 0},
                  capabilities=["infer"])
    run.connect("writer", "critic")
    return run


def test_a_notebook_function_runs_in_the_pool_and_replays(tmp_path: Path) -> None:
    path = tmp_path / "team.wbj"
    with team(path, workers=2) as run:
        run.run(10)
        assert run.state_of("writer")["seen"] and len(run.state_of("writer")["seen"]) == 3
        assert run.state_of("critic")["n"] == 3
    header = records(path)[0]
    idents = {a["name"]: a["id"] for a in header["agents"]}
    assert idents["writer"]["kind"] == "python_sandbox"
    assert idents["writer"]["config"]["entry"] == "writer"
    for ident in idents.values():  # the package is kept beside the journal, by hash
        assert stored_module(path, ident["hash"]).read_bytes().startswith(b"\0wbpy1\n")
    logs = [r["req"] for r in records(path) if r["k"] == "call" and r["fn"] == "log"]
    assert logs == ['{"round": 1}', '{"round": 2}', '{"round": 3}']
    report = wb.replay(path, workers=0)
    assert report.steps > 0 and report.changed_agents == []
    done = subprocess.run([sys.executable, "-m", "workbench", "replay", str(path)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: ")


def test_pool_and_in_process_sandbox_write_the_same_journal(tmp_path: Path) -> None:
    journals = []
    for workers in (0, 2):
        path = tmp_path / f"w{workers}.wbj"
        with team(path, workers=workers) as run:
            run.run(10)
        journals.append(path.read_bytes())
    assert journals[0] == journals[1]


def test_a_class_with_a_step_method_runs(tmp_path: Path) -> None:
    ns = cell('''\
class Counter:
    step_size = 2

    def step(self, state, inbox, host):
        return state + self.step_size, [], "ready"
''')
    with wb.Run(seed=1, workers=0, journal=tmp_path / "c.wbj") as run:
        run.add_agent("c", ns["Counter"], sandbox=True, state=0)
        run.run(3)
        assert run.state_of("c") == 6


@pytest.mark.parametrize(("source", "names", "message"), [
    ("def a(s, i, h):\n    return {'state': RUN}\n", {"RUN": object()},
     "uses 'RUN', a object value"),
    ("import os\ndef a(s, i, h):\n    return {'state': os.getcwd()}\n", {},
     "uses 'os', the module os, which the sandbox does not have"),
    ("from os.path import join\ndef a(s, i, h):\n    return {'state': join('a', 'b')}\n", {},
     "uses 'join', join from the module posixpath"),
    ("a = lambda s, i, h: {'state': s}\n", {}, "a lambda cannot be sandboxed"),
])
def test_what_cannot_be_captured_is_a_clear_error(source: str, names: dict[str, Any],
                                                   message: str) -> None:
    ns = cell(source, **names)
    with wb.Run(seed=1, workers=0) as run, pytest.raises(ConfigError, match=message):
        run.add_agent("a", ns["a"], sandbox=True)


def test_an_exception_is_a_traceback_naming_the_cells_lines(tmp_path: Path) -> None:
    ns = cell('''\
def ratio(x):
    return 1 / x


def agent(state, inbox, host):
    return {"state": ratio(state)}
''')
    path = tmp_path / "e.wbj"
    with wb.Run(seed=1, workers=0, journal=path) as run:
        run.add_agent("a", ns["agent"], sandbox=True, state=0)
        run.step()
    fault = faults(path)["a"]
    assert fault["kind"] == "fault"
    assert fault["detail"] == "ZeroDivisionError: division by zero"
    assert fault["data"]["where"] == "ratio line 2"
    assert fault["data"]["traceback"] == (
        "Traceback (most recent call last):\n"
        '  agent line 6: return {"state": ratio(state)}\n'
        "  ratio line 2: return 1 / x\n"
        "ZeroDivisionError: division by zero")


# --- hostile probes: each fails inside the sandbox with its own fault -----------------------

KERNEL_SECRET = "kernel-only"
PROBES: dict[str, tuple[str, str, str]] = {
    # name: (body of the step, fault kind, the start of its detail)
    "open": ("return {'state': open('/etc/passwd').read()}", "fault",
             "PermissionError: open() is not available in the sandbox"),
    "socket": ("import socket\n    socket.create_connection(('example.com', 80))", "fault",
               "ImportError: module 'socket' is not available in the sandbox"),
    "environ": ("import os\n    return {'state': dict(os.environ)}", "fault",
                "ImportError: module 'os' is not available in the sandbox"),
    "subprocess": ("import subprocess\n    subprocess.run(['id'])", "fault",
                   "ImportError: module 'subprocess' is not available in the sandbox"),
    "ctypes": ("import ctypes\n    ctypes.CDLL(None)", "fault",
               "ImportError: module 'ctypes' is not available in the sandbox"),
    "dunder import": ("__import__('os').system('id')", "fault",
                      "ImportError: module 'os' is not available in the sandbox"),
    "kernel globals": ("return {'state': KERNEL_SECRET}", "fault",
                       "NameError: name 'KERNEL_SECRET' is not defined"),
    "sys.modules os": ("import dataclasses\n"
                       "    return {'state': dataclasses.sys.modules['os'].listdir('/')}",
                       "trap", "the agent reached the system call"),
    "sys.modules open": ("import typing\n"
                         "    real_open = typing.sys.modules['builtins'].open\n"
                         "    return {'state': real_open('/etc/passwd').read()}",
                         "trap", "the agent reached the system call"),
    "sys.modules host": ("import enum\n"
                         "    host_calls = enum.sys.modules['wit_world.imports.host']\n"
                         "    return {'state': host_calls.infer('{}')}",
                         "trap", "the agent called host.infer, which it was not granted"),
}


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_hostile_probes_fail_inside_the_sandbox(probe: str, tmp_path: Path) -> None:
    body, kind, detail = PROBES[probe]
    ns = cell(f"def agent(state, inbox, host):\n    {body}\n")  # KERNEL_SECRET is not in it
    path = tmp_path / "p.wbj"
    environ = dict(os.environ)
    with wb.Run(seed=1, workers=1, journal=path) as run:
        run.add_agent("a", ns["agent"], sandbox=True, capabilities=["log"])
        run.step()
    fault = faults(path)["a"]
    assert (fault["kind"], fault["detail"][:len(detail)]) == (kind, detail)
    if kind == "trap":
        code = "capability" if probe == "sys.modules host" else "sandbox_denied"
        assert fault["data"]["code"] == code
    assert dict(os.environ) == environ and KERNEL_SECRET == "kernel-only"


def test_the_environment_is_empty_even_through_sys_modules(tmp_path: Path) -> None:
    ns = cell("import dataclasses\n\ndef agent(state, inbox, host):\n"
              "    return {'state': dict(dataclasses.sys.modules['os'].environ)}\n")
    with wb.Run(seed=1, workers=0, journal=tmp_path / "env.wbj") as run:
        run.add_agent("a", ns["agent"], sandbox=True)
        run.step()
        assert run.state_of("a") == {}


def test_the_agent_sees_only_its_own_namespace(tmp_path: Path) -> None:
    ns = cell("LIMIT = 3\nUNUSED = 4\n\ndef agent(state, inbox, host):\n"
              "    return {'state': sorted(globals()), 'status': 'done' if LIMIT else 'idle'}\n")
    with wb.Run(seed=1, workers=0, journal=tmp_path / "g.wbj") as run:
        run.add_agent("a", ns["agent"], sandbox=True)
        run.step()
        assert run.state_of("a") == ["LIMIT", "__builtins__", "__name__", "agent"]


# --- limits: fuel, stack and memory, the same on every run ---------------------------------

LIMITS = {
    "loop": ("n = 0\n    while True:\n        n += 1", "out_of_fuel"),
    "recursion": ("def down(n):\n        return down(n + 1)\n    return down(0)", "trap"),
    "memory": ("hoard = []\n    while True:\n        hoard.append(bytearray(1 << 20))",
               "memory_limit"),
}


@pytest.mark.parametrize("case", sorted(LIMITS))
def test_runaway_python_hits_its_limit_the_same_way_every_run(case: str,
                                                              tmp_path: Path) -> None:
    body, kind = LIMITS[case]
    journals = []
    for attempt in range(2):
        ns = cell(f"def agent(state, inbox, host):\n    {body}\n")
        path = tmp_path / f"{attempt}.wbj"
        with wb.Run(seed=1, workers=1, journal=path) as run:
            run.add_agent("a", ns["agent"], sandbox=True, fuel=400_000_000, memory="48MiB")
            run.step()
        journals.append([r for r in records(path) if r["k"] == "agent"])
    fault = journals[0][0]["fault"]
    assert fault["kind"] == kind
    if case == "loop":
        assert fault["data"]["consumed"] == 400_000_000
    if case == "recursion":
        assert fault["data"]["code"] == "stack_overflow"
        assert fault["data"]["at"] == "down line 3"
    assert journals[0] == journals[1]


def test_random_and_time_are_the_hosts_seeded_calls(tmp_path: Path) -> None:
    ns = cell('''\
import random
import time


def agent(state, inbox, host):
    return {"state": [random.randint(0, 10**9), random.random(), time.time()]}
''')

    def draw(seed: int) -> Any:
        path = tmp_path / f"{seed}.wbj"
        with wb.Run(seed=seed, workers=0, journal=path, overwrite=True) as run:
            run.add_agent("a", ns["agent"], sandbox=True, capabilities=["random", "now"])
            run.step()
            return run.state_of("a")

    assert draw(1) == draw(1) != draw(2)
    calls = [r["fn"] for r in records(tmp_path / "1.wbj") if r["k"] == "call"]
    assert calls == ["random", "now"]


def test_the_wall_clock_backstop_stops_a_python_step(tmp_path: Path) -> None:
    ns = cell("def agent(state, inbox, host):\n    while True:\n        pass\n")
    path = tmp_path / "t.wbj"
    with wb.Run(seed=1, workers=0, journal=path) as run:
        run.add_agent("a", ns["agent"], sandbox=True, limits=wb.Limits(
            fuel=10**15, timeout_s=0.3))
        run.step()
    fault = faults(path)["a"]
    assert (fault["kind"], fault["data"]) == ("timeout", {"timeout_s": 0.3})


@pytest.mark.parametrize("workers", [0, 1])
def test_source_that_does_not_compile_is_refused_at_add_agent(workers: int) -> None:
    package = AgentPackage("a", "function", (Piece("def a(state:\n", 3),)).to_bytes()
    with wb.Run(seed=1, workers=workers) as run, \
            pytest.raises(InvalidModule, match="does not compile in the sandbox: SyntaxError"):
        run.add_agent("a", package)


def test_a_killed_worker_is_replaced_and_the_journal_is_unchanged(tmp_path: Path) -> None:
    journals = []
    for kill in (False, True):
        path = tmp_path / f"{kill}.wbj"
        with WorkerPool(1) as pool, team(path, workers=pool) as run:
            run.run(2)
            if kill:
                os.kill(pool.pids()[0], signal.SIGKILL)
            run.run(10)
        journals.append(path.read_bytes())
    assert journals[0] == journals[1]


def test_a_fork_keeps_its_sandboxed_agents(tmp_path: Path) -> None:
    with team(tmp_path / "parent.wbj", workers=0) as run:
        run.run(2)
        with run.fork(journal=tmp_path / "child.wbj") as child:
            child.run(10)
            assert child.state_of("critic")["n"] == 3
    kinds = [a["id"]["kind"] for a in records(tmp_path / "child.wbj")[0]["agents"]]
    assert kinds == ["python_sandbox", "python_sandbox"]
    assert wb.replay(tmp_path / "child.wbj", workers=0).steps > 0


def test_the_cached_runtime_is_not_built_again(monkeypatch: pytest.MonkeyPatch,
                                               python_runtime: Path) -> None:
    def refuse(output: Path) -> None:
        raise AssertionError("componentize-py ran although the runtime is cached")

    monkeypatch.setattr(_runtime, "_componentize", refuse)
    assert runtime_path(progress=False) == python_runtime
    assert python_runtime.parent.name == _runtime.runtime_key()

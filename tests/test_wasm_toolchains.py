"""`workbench build-agent` and the example agents, built with the real guest toolchains and
run in the real sandbox (wasmtime).

Tests marked ``toolchain`` need clang for wasm32-wasi and AssemblyScript: a missing one fails
the test unless WORKBENCH_ALLOW_MISSING_TOOLCHAINS=1 (see tests/wasm_examples.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

import workbench as wb
from tests.wasm_examples import EXAMPLES, RecordingHost, build_or_fail
from workbench._types import Limits, Message, StepRequest, StepResult
from workbench._wasm._build import ASSEMBLYSCRIPT_VERSION, build_agent, toolchains
from workbench._wasm._local import LocalWasmExecutor
from workbench.cli import main
from workbench.errors import AgentBuildError, ConfigError, ToolchainMissing
from workbench.testing import FakeEngine

Build = Callable[[str], Path]
toolchain = pytest.mark.toolchain


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """Builds an example once per module: ``built("critic.c")`` is the module's path."""
    out_dir = tmp_path_factory.mktemp("agents")
    cache: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in cache:
            cache[name] = build_or_fail(EXAMPLES / name, out_dir / f"{Path(name).stem}.wasm")
        return cache[name]

    return build


@pytest.fixture
def executor() -> Iterator[Callable[..., LocalWasmExecutor]]:
    made: list[LocalWasmExecutor] = []

    def make(module: Path, name: str, capabilities: tuple[str, ...]) -> LocalWasmExecutor:
        made.append(LocalWasmExecutor(module.read_bytes(), name=name, limits=Limits(),
                                      capabilities=capabilities))
        return made[-1]

    yield make
    for ex in made:
        ex.close()


def message(sender: str, seq: int, payload: object, to: str = "x") -> Message:
    return Message(sender=sender, seq=seq, step=0, to=to, payload=payload)


def ok(result: StepResult) -> StepResult:
    assert result.fault is None, result.fault
    return result


# --- the modules the toolchains produce ----------------------------------------------------


@toolchain
@pytest.mark.parametrize("name", ["counter.c", "critic.c", "probe.c", "greeter.ts",
                                  "summarizer.ts"])
def test_example_is_an_abi_v1_module(built: Build, name: str) -> None:
    module = wasmtime.Module(wasmtime.Engine(), built(name).read_bytes())
    exports = {e.name for e in module.exports}
    assert {"memory", "alloc", "step"} <= exports
    assert ("_initialize" in exports) == name.endswith(".c")  # C agents are reactors
    assert {i.module for i in module.imports} <= {"host", "wasi_snapshot_preview1"}


@toolchain
def test_assemblyscript_agent_imports_only_host(built: Build) -> None:
    """The stub runtime and `--use abort=` leave no env.abort/env.trace/env.seed import."""
    module = wasmtime.Module.from_file(wasmtime.Engine(), str(built("greeter.ts")))
    assert [(i.module, i.name) for i in module.imports] == [("host", "log")]


@toolchain
@pytest.mark.parametrize("name", ["counter.c", "greeter.ts"])
def test_builds_are_reproducible(built: Build, name: str, tmp_path: Path) -> None:
    """An agent's identity is its module's hash, so the same source must give the same bytes."""
    again = build_or_fail(EXAMPLES / name, tmp_path / "again.wasm")
    assert again.read_bytes() == built(name).read_bytes()


# --- one step of each example in the sandbox -------------------------------------------------


@toolchain
def test_counter_echoes_with_host_random_and_now(built: Build, executor: Callable[
        ..., LocalWasmExecutor]) -> None:
    agent = executor(built("counter.c"), "counter", ("random", "now"))
    host = RecordingHost(step=4)
    inbox = (message("alice", 0, {"x": [1, 2.5, {"y": "é\n"}]}), message("bob", 3, "hi"))
    result = ok(agent.step(StepRequest("counter", 4, {"count": 1, "limit": 3}, inbox), host))
    assert result.state == {"count": 2, "limit": 3}
    assert result.status == "ready"
    nonces, times = host.values("random"), host.values("now")
    assert [(o.to, o.payload) for o in result.outbox] == [
        ("alice", {"echo": {"x": [1, 2.5, {"y": "é\n"}]}, "count": 2, "nonce": str(nonces[0]),
                   "at": times[0]}),
        ("bob", {"echo": "hi", "count": 2, "nonce": str(nonces[1]), "at": times[1]}),
    ]
    assert nonces[0] > 2**63  # read back as unsigned
    assert times == [4_000_000_001, 4_000_000_003]


@toolchain
def test_counter_is_done_at_its_limit(built: Build, executor: Callable[
        ..., LocalWasmExecutor]) -> None:
    agent = executor(built("counter.c"), "counter", ("random", "now"))
    result = ok(agent.step(StepRequest("counter", 9, {"count": 2, "limit": 3}, ()),
                           RecordingHost(step=9)))
    assert (result.state, result.outbox, result.status) == ({"count": 3, "limit": 3}, (), "done")


@toolchain
def test_critic_asks_the_model_and_forwards_the_reply(built: Build, executor: Callable[
        ..., LocalWasmExecutor]) -> None:
    agent = executor(built("critic.c"), "critic", ("infer", "log"))
    host = RecordingHost(step=2)
    inbox = (message("writer", 0, {"draft": 'Cats "rule".'}),)
    result = ok(agent.step(StepRequest("critic", 2, {"forward_to": "editor"}, inbox), host))
    [request] = host.values("infer")
    assert request["max_tokens"] == 48
    assert request["messages"][1] == {"role": "user", "content": (
        'Here is a short text: "Cats "rule"." In one sentence, what should the writer improve?')}
    assert [(o.to, o.payload) for o in result.outbox] == [
        ("editor", {"critique": "too vague", "draft": 'Cats "rule".', "finish_reason": "stop"})]
    assert result.state == {"reviewed": 1, "forward_to": "editor"}
    assert result.status == "idle"


@toolchain
def test_critic_forwards_a_rejected_request_as_an_error(built: Build, executor: Callable[
        ..., LocalWasmExecutor]) -> None:
    agent = executor(built("critic.c"), "critic", ("infer", "log"))
    host = RecordingHost(infer_reply={"error": "token budget spent"})
    result = ok(agent.step(StepRequest("critic", 0, None, (message("w", 0, "draft"),)), host))
    assert [(o.to, o.payload) for o in result.outbox] == [
        ("w", {"error": "token budget spent"})]
    assert host.values("log") == ["token budget spent"]


@toolchain
def test_critic_without_infer_is_refused(built: Build) -> None:
    with pytest.raises(wb.CapabilityError, match="infer"):
        LocalWasmExecutor(built("critic.c").read_bytes(), name="critic", limits=Limits(),
                          capabilities=("log",))


@toolchain
def test_assemblyscript_greeter_replies_to_each_sender(built: Build, executor: Callable[
        ..., LocalWasmExecutor]) -> None:
    agent = executor(built("greeter.ts"), "greeter", ("log",))
    host = RecordingHost()
    inbox = (message("alice", 0, {"name": 'Ada "Q" é😀'}), message("@user", 0, "Bob"))
    result = ok(agent.step(StepRequest("greeter", 1, {"greeted": 5}, inbox), host))
    assert [(o.to, o.payload) for o in result.outbox] == [
        ("alice", {"text": 'hello, Ada "Q" é😀', "count": 6}),
        ("@user", {"text": "hello, Bob", "count": 7}),
    ]
    assert result.state == {"greeted": 7}
    assert host.values("log") == ['greeting Ada "Q" é😀', "greeting Bob"]


@toolchain
def test_assemblyscript_summarizer_uses_every_host_call(built: Build, executor: Callable[
        ..., LocalWasmExecutor]) -> None:
    agent = executor(built("summarizer.ts"), "summarizer", ("infer", "log", "random", "now"))
    host = RecordingHost(step=5)
    inbox = (message("alice", 0, {"text": "A long story."}),)
    result = ok(agent.step(StepRequest("summarizer", 5, None, inbox), host))
    assert [name for name, _ in host.calls] == ["now", "random", "infer"]
    assert host.values("infer") == [{"messages": [
        {"role": "user", "content": "Summarize in one line: A long story."}], "max_tokens": 32}]
    assert [(o.to, o.payload) for o in result.outbox] == [
        ("alice", {"summary": "too vague", "tokens": 2, "asked_at": 5_000_000_000,
                   "ticket": str(host.values("random")[0])})]
    assert result.state == {"summarized": 1}


@toolchain
def test_assemblyscript_summarizer_reports_a_refusal(built: Build, executor: Callable[
        ..., LocalWasmExecutor]) -> None:
    agent = executor(built("summarizer.ts"), "summarizer", ("infer", "log", "random", "now"))
    host = RecordingHost(infer_reply={"error": "'max_tokens' must be between 1 and 8"})
    result = ok(agent.step(StepRequest("summarizer", 0, {"summarized": 2},
                                       (message("bob", 0, "text"),)), host))
    assert [(o.to, o.payload) for o in result.outbox] == [
        ("bob", {"error": "'max_tokens' must be between 1 and 8"})]
    assert host.values("log") == ["summary refused: 'max_tokens' must be between 1 and 8"]
    assert result.state == {"summarized": 3}


@toolchain
def test_payload_too_deep_for_the_agent_is_a_trap_fault(built: Build, executor: Callable[
        ..., LocalWasmExecutor]) -> None:
    """The AssemblyScript JSON reader refuses nesting deeper than 64 by trapping."""
    agent = executor(built("greeter.ts"), "greeter", ("log",))
    deep: object = "x"
    for _ in range(70):
        deep = [deep]
    result = agent.step(StepRequest("greeter", 0, None, (message("a", 0, deep),)),
                        RecordingHost())
    assert result.fault is not None and result.fault.kind == "trap"


# --- a whole run: C and AssemblyScript agents, a Python agent and the fake model -----------


def _collect(state: Any, inbox: list[dict[str, Any]], host: Any) -> dict[str, Any]:
    """A Python agent: introduces itself to the greeter once, then keeps what it receives."""
    if state is None:
        return {"state": [], "outbox": [("greeter", {"name": "editor"})], "status": "idle"}
    return {"state": [*state, *(m["payload"] for m in inbox)], "outbox": [], "status": "idle"}


def _team(built: Build, path: Path, workers: int) -> wb.Run:
    run = wb.Run(seed=7, policy="parallel", model=FakeEngine(), journal=path, workers=workers)
    run.add_agent("critic", built("critic.c"), state={"forward_to": "editor"},
                  capabilities=["infer", "log"])
    run.add_agent("greeter", built("greeter.ts"), capabilities=["log"])
    run.add_agent("counter", built("counter.c"), state={"limit": 2},
                  capabilities=["random", "now"])
    run.add_agent("editor", _collect)
    for sender, receiver in [("critic", "editor"), ("greeter", "editor"),
                             ("editor", "greeter")]:
        run.connect(sender, receiver)
    return run


@toolchain
@pytest.mark.slow
def test_run_with_built_agents_is_deterministic_and_replays(built: Build,
                                                             tmp_path: Path) -> None:
    """In-process twice, then in the worker pool: one journal, byte for byte; it replays."""
    journals = []
    for name, workers in (("a.wbj", 0), ("b.wbj", 0), ("c.wbj", 2)):
        with _team(built, tmp_path / name, workers) as run:
            run.send("critic", {"draft": "The sea is wet."})
            run.run(6)
            editor = run.state_of("editor")
        journals.append((tmp_path / name).read_bytes())
    assert journals[0] == journals[1] == journals[2]
    critique = next(p for p in editor if "critique" in p)
    assert critique["draft"] == "The sea is wet." and critique["critique"]
    assert {"text": "hello, editor", "count": 1} in editor
    report = wb.replay(tmp_path / "a.wbj", agents={"editor": _collect})
    assert report.steps >= 2


# --- build_agent and the command -----------------------------------------------------------


def test_wat_needs_no_toolchain(tmp_path: Path) -> None:
    source = tmp_path / "tiny.wat"
    source.write_text('(module (memory (export "memory") 1))')
    out = build_agent(source)
    assert out == tmp_path / "tiny.wasm"
    assert out.read_bytes().startswith(b"\0asm")


def test_bad_source_keeps_the_old_module(tmp_path: Path) -> None:
    source, out = tmp_path / "bad.wat", tmp_path / "bad.wasm"
    out.write_bytes(b"old")
    source.write_text("(module (func")
    with pytest.raises(AgentBuildError, match="wat2wasm could not build") as info:
        build_agent(source, out)
    assert "expected `)`" in info.value.output
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.wasm", "bad.wat"]  # no temp left


def test_unknown_extension_and_missing_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown extension '\.rs'.*\.wat, \.wast, \.c, \.ts"):
        build_agent(tmp_path / "agent.rs")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_agent(tmp_path / "agent.c")


def test_missing_clang_names_the_packages(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("WORKBENCH_CLANG", raising=False)
    source = tmp_path / "agent.c"
    source.write_text("int x;\n")
    with pytest.raises(ToolchainMissing, match="apt-get install clang lld wasi-libc "
                                               "libclang-rt-14-dev-wasm32"):
        build_agent(source)


def test_missing_asc_says_how_to_install_it(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("WORKBENCH_ASC", raising=False)
    source = tmp_path / "agent.ts"
    source.write_text("export function step(p: i32, n: i32): i64 { return 0; }\n")
    with pytest.raises(ToolchainMissing, match=rf"npm install --prefix <agent folder> "
                                               rf"assemblyscript@{ASSEMBLYSCRIPT_VERSION}"):
        build_agent(source)


def test_toolchains_says_what_is_missing(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    for name in ("WORKBENCH_CLANG", "WORKBENCH_ASC"):
        monkeypatch.delenv(name, raising=False)
    found = toolchains(tmp_path)
    assert found["wat"] == "wasmtime.wat2wasm (built in)"
    assert found["c"].startswith("not found: install the C toolchain for agents: apt-get")
    assert found["assemblyscript"].startswith("not found: install it next to the agent: npm")


@toolchain
def test_toolchains_finds_the_installed_ones(built: Build) -> None:
    built("counter.c")
    built("greeter.ts")
    found = toolchains(EXAMPLES)
    assert Path(found["c"]).name.startswith("clang")
    assert found["assemblyscript"].endswith("assemblyscript/bin/asc.js")


@toolchain
def test_missing_wasi_libc_is_told_apart_from_a_bad_source(
        built: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built("counter.c")  # fails (or skips) first if clang itself is missing
    monkeypatch.setenv("WORKBENCH_WASI_SYSROOT", str(tmp_path))  # an empty sysroot
    with pytest.raises(ToolchainMissing, match="wasi-libc"):
        build_agent(EXAMPLES / "counter.c", tmp_path / "counter.wasm")


@toolchain
def test_missing_compiler_rt_names_its_package(built: Build, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A clang whose resource folder has headers but no wasm32 builtins library."""
    built("counter.c")
    clang = shutil.which("clang") or pytest.fail("clang built counter.c but is not on PATH")
    version = subprocess.run([clang, "-dumpversion"], capture_output=True, text=True,
                             check=True).stdout.strip()
    resources = subprocess.run([clang, "-print-resource-dir"], capture_output=True,
                               text=True, check=True).stdout.strip()
    shutil.copytree(Path(resources) / "include", tmp_path / "rd" / "include")
    wrapper = tmp_path / "clang-without-rt"
    wrapper.write_text(f'#!/bin/sh\nexec "{clang}" -resource-dir="{tmp_path / "rd"}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("WORKBENCH_CLANG", str(wrapper))
    major = version.split(".")[0]
    with pytest.raises(ToolchainMissing, match=f"apt-get install libclang-rt-{major}-dev-wasm32"):
        build_agent(EXAMPLES / "counter.c", tmp_path / "counter.wasm")


@toolchain
def test_c_compile_error_carries_clang_diagnostics(built: Build, tmp_path: Path) -> None:
    built("counter.c")
    source = tmp_path / "broken.c"
    source.write_text("int f(void) { return undefined_name; }\n")
    with pytest.raises(AgentBuildError, match="clang could not build") as info:
        build_agent(source)
    assert "broken.c:1:" in info.value.output and "undefined_name" in info.value.output
    assert not (tmp_path / "broken.wasm").exists()


@toolchain
def test_command_builds_and_prints_path_and_hash(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "counter.wasm"
    code = main(["build-agent", str(EXAMPLES / "counter.c"), "-o", str(out)])
    if code != 0 and "missing toolchain" in capsys.readouterr().err:
        build_or_fail(EXAMPLES / "counter.c", out)  # fails or skips with the install hint
    assert code == 0
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert capsys.readouterr().out == f"{out}  sha256:{digest}\n"


def test_command_reports_failure_with_exit_code_1(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "bad.wat"
    source.write_text("(module (func")
    assert main(["build-agent", str(source)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("workbench build-agent: error: wat2wasm could not build")


def test_examples_readme_lists_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    sources = sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".c", ".ts"))
    missing = [name for name in sources if name not in readme]
    assert not missing, f"examples/agents/README.md does not mention {missing}"
    assert json.loads((EXAMPLES / "package.json").read_text())["devDependencies"] == {
        "assemblyscript": ASSEMBLYSCRIPT_VERSION}

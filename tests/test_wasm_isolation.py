"""Isolation: a C agent on wasi-libc tries to reach the host, and every attempt is denied.

examples/agents/probe.c attempts each escape inside the real sandbox and reports the
outcome; these tests assert each denial precisely (the WASI errno it got). What C cannot
even express against wasi-libc (sockets, processes) is checked at build time, and imports a
module declares for itself are checked at load time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from tests.wasm_examples import EXAMPLES, RecordingHost, build_or_fail
from workbench._types import Limits, StepRequest, StepResult
from workbench._wasm._build import build_agent
from workbench._wasm._local import LocalWasmExecutor
from workbench.errors import AgentBuildError

pytestmark = pytest.mark.toolchain

# WASI preview 1 errno values (wasi/api.h)
EBADF, ENOTCAPABLE, ENOTSOCK, ENOTSUP = 8, 76, 57, 58

PROBE_STEP = 3


@pytest.fixture(scope="module")
def probe_module(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("probe") / "probe.wasm"
    return build_or_fail(EXAMPLES / "probe.c", out).read_bytes()


@pytest.fixture(scope="module")
def probe(probe_module: bytes) -> Iterator[tuple[dict[str, Any], RecordingHost, str]]:
    """The probe's report after one step, the host it called, and what reached fd 1/2."""
    host = RecordingHost(step=PROBE_STEP)
    agent = LocalWasmExecutor(probe_module, name="probe", limits=Limits(),
                              capabilities=("random", "now"))
    request = StepRequest("probe", PROBE_STEP, None, ())
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(Path(__file__).resolve().parents[1])  # a cwd full of readable files
            result, leaked = _with_fds_captured(lambda: agent.step(request, host))
    finally:
        agent.close()
    assert result.fault is None, result.fault
    assert result.status == "done"
    yield result.state, host, leaked


def _with_fds_captured(call: Callable[[], StepResult]) -> tuple[StepResult, str]:
    """Runs ``call`` with this process's fds 1 and 2 sent to a file; returns what arrived."""
    with tempfile.TemporaryFile() as sink:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            result = call()
        finally:
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
        sink.seek(0)
        return result, sink.read().decode("utf-8", "replace")


DENIED = {
    # files: no preopened directory exists, so every path is outside the sandbox
    "read_absolute": ENOTCAPABLE,     # fopen("/etc/passwd")
    "read_relative": ENOTCAPABLE,     # fopen("pyproject.toml"), with the cwd holding one
    "read_parent": ENOTCAPABLE,       # fopen("../../../../etc/passwd")
    "write_file": ENOTCAPABLE,        # fopen("/tmp/workbench-probe.txt", "w")
    "list_root": ENOTCAPABLE,         # opendir("/")
    "list_cwd": ENOTCAPABLE,          # opendir(".")
    "preopened_dirs": 0,              # fd_prestat_get on fds 3..63 finds nothing
    "path_open_fd3": EBADF,           # raw WASI path_open on the first preopen slot
    # network: WASI preview 1 can only accept on sockets handed in; none are
    "accept_fd3": EBADF,
    "accept_stdin": ENOTSOCK,
    # environment and arguments: nothing inherited
    "getenv": 0,                      # getenv("PATH" | "HOME" | "USER") is NULL
    "environ": 0,                     # environ is empty
    "args": 0,                        # no arguments
    "stdin": 0,                       # stdin is empty: read() returns 0
    # time: a guest cannot sleep (it would make a step's outcome depend on the clock)
    "sleep": ENOTSUP,
}


@pytest.mark.parametrize("check", sorted(DENIED))
def test_probe_is_denied(probe: tuple[dict[str, Any], RecordingHost, str], check: str) -> None:
    report = probe[0]["checks"][check]
    assert report["denied"] is True, report
    assert report["errno"] == DENIED[check], report


def test_probe_checked_everything_listed(probe: tuple[dict[str, Any], RecordingHost,
                                                      str]) -> None:
    assert sorted(probe[0]["checks"]) == sorted(DENIED)


def test_no_file_was_created(probe: tuple[dict[str, Any], RecordingHost, str]) -> None:
    assert not Path("/tmp/workbench-probe.txt").exists()


def test_stdout_and_stderr_reach_nobody(probe: tuple[dict[str, Any], RecordingHost,
                                                     str]) -> None:
    state, _, leaked = probe
    assert state["printed"] == len("workbench-probe: stdout\n")  # the guest thinks it wrote
    assert "workbench-probe" not in leaked


def test_wasi_clocks_are_the_seeded_host_clock(probe: tuple[dict[str, Any], RecordingHost,
                                                            str]) -> None:
    state, host, _ = probe
    assert host.values("now")[:2] == [PROBE_STEP * 10**9 + i for i in range(2)]
    assert state["clock"] == {"realtime_ns": host.values("now")[0],
                              "monotonic_ns": host.values("now")[1]}


def test_wasi_entropy_is_the_seeded_host_random(probe: tuple[dict[str, Any], RecordingHost,
                                                             str]) -> None:
    state, host, _ = probe
    assert state["entropy"] == str(host.values("random")[0])


def test_probe_without_clock_capability_is_refused(probe_module: bytes) -> None:
    """Not granting `now` removes the clock entirely; WASI does not fall back to the host's."""
    with pytest.raises(wb.CapabilityError, match="now"):
        LocalWasmExecutor(probe_module, name="probe", limits=Limits(), capabilities=("random",))


# --- what cannot be built --------------------------------------------------------------------

UNBUILDABLE = {
    # wasi-libc declares none of these: clang stops at the call
    "socket": ("#include <sys/socket.h>\n", "socket(AF_INET, SOCK_STREAM, 0)",
               "implicit declaration of function 'socket'"),
    "connect": ("#include <sys/socket.h>\n", "connect(3, 0, 0)",
                "implicit declaration of function 'connect'"),
    "fork": ("#include <unistd.h>\n", "fork()", "implicit declaration of function 'fork'"),
    "execv": ("#include <unistd.h>\n", "execv(\"/bin/sh\", 0)",
              "implicit declaration of function 'execv'"),
    "popen": ("#include <stdio.h>\n", "popen(\"ls\", \"r\") != 0",
              "implicit declaration of function 'popen'"),
    # declared, but wasi-libc has no definition: the linker stops
    "system": ("#include <stdlib.h>\n", "system(\"ls\")", "undefined symbol: system"),
}


@pytest.mark.parametrize("name", sorted(UNBUILDABLE))
def test_escape_through_libc_does_not_build(name: str, tmp_path: Path,
                                            probe_module: bytes) -> None:
    include, call, diagnostic = UNBUILDABLE[name]
    source = tmp_path / f"{name}.c"
    source.write_text(f"{include}__attribute__((export_name(\"escape\"))) "
                      f"int escape(void) {{ return {call}; }}\n")
    with pytest.raises(AgentBuildError) as info:
        build_agent(source)
    assert diagnostic in info.value.output


# --- what builds but cannot be loaded ----------------------------------------------------------

_GLUE = """
#include "workbench_agent.h"
static char out[] = "{\\"state\\":null}";
WB_EXPORT("alloc") uint32_t wb_alloc(uint32_t size) { static char b[4096]; return size <= 4096 ? (uint32_t)(uintptr_t)b : 0; }
WB_EXPORT("step") uint64_t wb_step(uint32_t p, uint32_t n) { (void)p; (void)n; return WB_PACK((uintptr_t)out, sizeof out - 1 + 0 * escape()); }
"""  # noqa: E501

SELF_DECLARED = {
    "env.system": ('__attribute__((import_module("env"), import_name("system")))',
                   "it imports env.system"),
    "host.spawn": ('__attribute__((import_module("host"), import_name("spawn")))',
                   "it imports host.spawn, which ABI v1 does not have"),
    "wasi.sock_open": ('__attribute__((import_module("wasi_snapshot_preview1"), '
                       'import_name("sock_open")))', "cannot be linked"),
}


@pytest.mark.parametrize("name", sorted(SELF_DECLARED))
def test_self_declared_import_is_refused(name: str, tmp_path: Path,
                                         probe_module: bytes) -> None:
    attribute, message = SELF_DECLARED[name]
    source = tmp_path / "escape.c"
    source.write_text(f"#include <stdint.h>\n{attribute} int escape(void);\n{_GLUE}")
    module = build_agent(source).read_bytes()
    with pytest.raises(wb.InvalidModule, match=message):
        LocalWasmExecutor(module, name="escape", limits=Limits(), capabilities=())


def test_worker_pool_denies_the_same(probe: tuple[dict[str, Any], RecordingHost, str],
                                     probe_module: bytes, tmp_path: Path) -> None:
    """The worker processes run the same sandbox: the probe sees exactly the same world."""
    with wb.Run(seed=1, journal=tmp_path / "run.wbj", workers=1) as run:
        run.add_agent("probe", probe_module, capabilities=["random", "now"])
        run.step()
        assert run.status_of("probe") == "done"
        assert run.state_of("probe")["checks"] == probe[0]["checks"]

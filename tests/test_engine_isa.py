"""Batch invariance under other instruction sets than the host's, emulated with qemu-user.

onnxruntime picks its kernels (MLAS) by CPUID at start-up, so one CPU only ever tests one
path. The tests marked ``invariance`` run again here in a child pytest whose interpreter runs
under ``qemu-x86_64 -cpu MODEL``: AVX2 (Haswell) and AVX without AVX2 (SandyBridge). QEMU's
TCG does not emulate AVX-512, so the host runs that path natively when it has it. numpy 2.4
needs more than SSE4.2, which is why the oldest model here is SandyBridge.

``scripts/test.sh`` installs qemu-user when it runs as root (CI). Elsewhere the tests are
skipped with the install command, except under ``CI=true``, where a missing emulator fails.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import real_model

from workbench._engine._cpu import kernel_path
from workbench._engine._model import ModelFiles

__all__ = ["real_model"]  # the fixture used below

ROOT = Path(__file__).resolve().parent.parent
EMULATED = {"Haswell": "avx2", "SandyBridge": "avx"}  # qemu CPU model -> MLAS kernel path
# Which invariance tests run under each model. Without AVX2 onnxruntime has no quantised
# MatMulNBits kernel and dequantises every weight on every call: the real model under
# emulation then takes well over half an hour, so the AVX path is covered by the tiny and
# SmolLM2-width models (and benchmarks/invariance.py at SmolLM2's widths).
SELECTION = {"Haswell": "invariance", "SandyBridge": "invariance and not model"}
INVARIANCE_FILES = ("tests/test_engine_batching.py", "tests/test_engine_decode.py",
                    "tests/test_run_engine.py")


def _qemu() -> str:
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("instruction-set emulation is set up for x86-64 hosts only")
    found = shutil.which("qemu-x86_64")
    if found is None:
        message = "qemu-x86_64 is missing: apt-get install qemu-user (scripts/test.sh does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _emulated(cpu: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([_qemu(), "-cpu", cpu, sys.executable, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _useful_tail(output: str) -> str:
    lines = [ln for ln in output.splitlines() if "TCG doesn't support" not in ln]
    return "\n".join(lines[-40:])


@pytest.mark.slow
@pytest.mark.parametrize("cpu", sorted(EMULATED))
def test_the_emulated_cpu_takes_its_own_kernel_path(cpu: str) -> None:
    """Guards the test below: the child really sees the emulated CPU's instruction sets."""
    probe = "from workbench._engine._cpu import cpu_info; print(cpu_info()['isa'])"
    result = _emulated(cpu, ["-c", probe], timeout=120)
    assert result.returncode == 0, _useful_tail(result.stderr)
    assert result.stdout.split()[-1] == EMULATED[cpu]


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_batch_invariance_holds_under_emulated_instruction_sets(real_model: ModelFiles) -> None:
    """The ``invariance`` tests pass on each emulated path (see SELECTION): AVX2 runs all of
    them, the real model included; AVX the tiny and SmolLM2-width ones. The emulators run
    side by side, one per core; the default model is fetched and converted natively first
    (``real_model``)."""
    qemu = _qemu()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    children = {cpu: subprocess.Popen(
        [qemu, "-cpu", cpu, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-m", SELECTION[cpu], *INVARIANCE_FILES],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for cpu in sorted(EMULATED)}
    outputs = {cpu: child.communicate(timeout=2300)[0] for cpu, child in children.items()}
    for cpu, child in children.items():
        tail = _useful_tail(outputs[cpu])
        assert child.returncode == 0, f"under -cpu {cpu}:\n{tail}"
        assert " passed" in tail and "failed" not in tail, tail


@pytest.mark.parametrize(("flags", "path"), [
    ({"sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"},
     "avx512-vnni"),
    ({"sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl"}, "avx512"),
    ({"sse4_1", "avx", "avx2", "fma", "avx512f"}, "avx2"),  # no AVX-512 BW/VL
    ({"sse4_1", "avx", "avx2", "fma", "avx_vnni"}, "avx2-vnni"),
    ({"sse4_1", "avx", "avx2", "fma"}, "avx2"),
    ({"sse4_1", "avx", "avx2"}, "avx"),  # AVX2 without FMA: not MLAS's AVX2 path
    ({"sse4_1", "avx"}, "avx"),
    ({"sse4_1"}, "sse4"),
    (set(), "sse2"),
    ({"asimd"}, "neon"),
    ({"asimd", "asimddp"}, "neon-dot"),
])
def test_kernel_path_follows_the_instruction_sets(flags: set[str], path: str) -> None:
    assert kernel_path(frozenset(flags)) == path

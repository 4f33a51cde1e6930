"""The CPU's instruction sets and the kernel path ONNX Runtime's MLAS takes on it.

onnxruntime exposes no API for its kernel dispatch, so the path is derived the way MLAS
chooses it at start-up (x86-64: AVX-512 VNNI, AVX-512, AVX2-VNNI, AVX2, AVX, SSE; ARM64:
NEON with or without the dot-product extension). The features come from CPUID as numpy
reads it, which is right under an emulator too (``qemu-x86_64 -cpu Haswell``), where
``/proc/cpuinfo`` still describes the host. ``/proc/cpuinfo`` only adds the flags numpy does
not know (AVX-VNNI, AMX), and only when it agrees with CPUID on AVX-512.

A journal header records :func:`cpu_info` under the engine description: a re-run on a CPU
with another path may give other tokens (docs/engine.md has the measured answer); a replay
needs no model and is unaffected.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import platform
from pathlib import Path

from .._types import JSON

__all__ = ["cpu_info", "kernel_path"]

# numpy's feature names, in the lower-case spelling Linux uses in /proc/cpuinfo.
_NUMPY_FLAGS = {"SSE41": "sse4_1", "SSE42": "sse4_2", "AVX": "avx", "F16C": "f16c",
                "FMA3": "fma", "AVX2": "avx2", "AVX512F": "avx512f", "AVX512BW": "avx512bw",
                "AVX512VL": "avx512vl", "AVX512VNNI": "avx512_vnni",
                "AVX512BF16": "avx512_bf16", "ASIMD": "asimd", "ASIMDDP": "asimddp"}
_EXTRA_FLAGS = ("avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


@functools.cache
def cpu_info() -> dict[str, JSON]:
    """``{"arch", "isa", "features"}``: the machine, the MLAS kernel path and the relevant
    instruction-set flags (sorted). Never raises: unknown features are simply absent."""
    flags = _features()
    return {"arch": platform.machine(), "isa": kernel_path(flags), "features": sorted(flags)}


def kernel_path(flags: frozenset[str]) -> str:
    """The MLAS path for these flags, e.g. ``"avx2"`` or ``"avx512-vnni"``."""
    if "asimd" in flags:
        return "neon-dot" if "asimddp" in flags else "neon"
    if "avx512f" in flags and {"avx512bw", "avx512vl"} <= flags:
        return "avx512-vnni" if "avx512_vnni" in flags else "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2-vnni" if "avx_vnni" in flags else "avx2"
    if "avx" in flags:
        return "avx"
    return "sse4" if "sse4_1" in flags else "sse2"


def _features() -> frozenset[str]:
    numpy_features: dict[str, bool] = {}
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        with contextlib.suppress(ImportError):  # the second is numpy < 2's name
            numpy_features = importlib.import_module(module).__cpu_features__
            break
    flags = {name for key, name in _NUMPY_FLAGS.items() if numpy_features.get(key)}
    proc = _proc_flags()
    if ("avx512f" in proc) == ("avx512f" in flags) and ("avx2" in proc) == ("avx2" in flags):
        flags |= {f for f in _EXTRA_FLAGS if f in proc}
    return frozenset(flags)


def _proc_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.partition(":")[2].split())
    return frozenset()

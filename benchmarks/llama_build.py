"""The llama.cpp the engine benchmark compares against: this CPU's features, the CMake flags
chosen from them, and a llama-cpp-python build that really has those flags.

pip keeps the wheels it builds in its own cache keyed by the source, not by ``CMAKE_ARGS``:
a build with other flags can silently reuse an earlier wheel. So the wheel is built with
``--no-cache-dir`` into a folder of our own keyed by (version, flags), installed into a
virtual environment kept beside it, and checked at run time against the CPU features ggml
reports (``llama_print_system_info``).

Standard library only: the llama.cpp side of the benchmark imports this too.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import venv
from pathlib import Path

LLAMA_CPP_VERSION = "0.3.36"
CACHE = Path(os.environ.get("WORKBENCH_BENCH_CACHE", Path.home() / ".cache" / "workbench-bench"))

# The instruction sets shown with every result (as /proc/cpuinfo names them).
SHOWN_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile",
               "amx_int8", "amx_bf16")
AVX512_BASE = ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")  # ggml's GGML_AVX512

# x86 ggml options, each ON only when the CPU has every listed flag (and the option before
# it in the chain, for the AVX-512 extensions). AMX stays OFF whatever the CPU says: llama.cpp's
# AMX kernels crashed (SIGSEGV in ggml_backend_amx_mul_mat) on this model in virtual machines
# that list AMX.
X86_OPTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GGML_SSE42", ("sse4_2",)),
    ("GGML_AVX", ("avx",)),
    ("GGML_AVX2", ("avx2",)),
    ("GGML_FMA", ("fma",)),
    ("GGML_F16C", ("f16c",)),
    ("GGML_BMI2", ("bmi2",)),
    ("GGML_AVX_VNNI", ("avx2", "avx_vnni")),
    ("GGML_AVX512", AVX512_BASE),
    ("GGML_AVX512_VBMI", (*AVX512_BASE, "avx512vbmi")),
    ("GGML_AVX512_VNNI", (*AVX512_BASE, "avx512_vnni")),
    ("GGML_AVX512_BF16", (*AVX512_BASE, "avx512_bf16")),
    ("GGML_AMX_TILE", ()),
    ("GGML_AMX_INT8", ()),
    ("GGML_AMX_BF16", ()),
)
ALWAYS_OFF = {"GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16"}
FIXED_ARGS = ("-DGGML_CUDA=OFF", "-DGGML_BLAS=OFF", "-DLLAMA_BUILD_TESTS=OFF",
              "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_CURL=OFF")
# ggml option -> the feature name llama_print_system_info() reports when it was compiled in.
REPORTED = {"GGML_AVX": "AVX", "GGML_AVX2": "AVX2", "GGML_FMA": "FMA", "GGML_F16C": "F16C",
            "GGML_BMI2": "BMI2", "GGML_AVX_VNNI": "AVX_VNNI", "GGML_AVX512": "AVX512",
            "GGML_AVX512_VBMI": "AVX512_VBMI", "GGML_AVX512_VNNI": "AVX512_VNNI",
            "GGML_AVX512_BF16": "AVX512_BF16", "GGML_AMX_INT8": "AMX_INT8"}


# --- the CPU ---------------------------------------------------------------------------------

def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def cpu_name() -> str:
    for line in _cpuinfo():
        if line.startswith(("model name", "Model", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cpu_flags() -> frozenset[str]:
    """The instruction-set flags the kernel lists for the first CPU (x86 ``flags``, ARM
    ``Features``); empty where /proc/cpuinfo does not exist."""
    for line in _cpuinfo():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_line(flags: frozenset[str] | None = None) -> str:
    """``CPU: <model>, <n> CPUs, <arch>; has ...; lacks ...`` for the flags in SHOWN_FLAGS."""
    flags = cpu_flags() if flags is None else flags
    has = [f for f in SHOWN_FLAGS if f in flags]
    lacks = [f for f in SHOWN_FLAGS if f not in flags]
    return (f"CPU: {cpu_name()}, {os.cpu_count()} CPUs, {platform.machine()}; "
            f"has {' '.join(has) or '-'}; lacks {' '.join(lacks) or '-'}")


def cpu_tag(flags: frozenset[str] | None = None) -> str:
    """A short name for the instruction-set level, for headings: ``AVX-512 VNNI``, ``AVX2``..."""
    flags = cpu_flags() if flags is None else flags
    if {"amx_tile", "amx_int8"} <= flags:
        level = "AMX"
    elif set(AVX512_BASE) <= flags:
        level = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX-512"
    elif "avx2" in flags:
        level = "AVX2 + AVX-VNNI" if "avx_vnni" in flags else "AVX2"
    elif "sse4_2" in flags:
        level = "SSE4.2"
    else:
        level = platform.machine()
    return level


# --- the build -------------------------------------------------------------------------------

def ggml_options(flags: frozenset[str] | None = None) -> dict[str, bool]:
    """Every x86 ggml instruction-set option, ON or OFF from what this CPU has. All are passed
    explicitly: with GGML_NATIVE=OFF ggml turns SSE4.2/AVX/AVX2/FMA/F16C/BMI2 ON by default,
    which would be wrong on a CPU without them. Empty off x86 (the build uses GGML_NATIVE)."""
    flags = cpu_flags() if flags is None else flags
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "i386"):
        return {}
    return {name: bool(need) and name not in ALWAYS_OFF and set(need) <= flags
            for name, need in X86_OPTIONS}


def cmake_args(options: dict[str, bool]) -> str:
    native = "-DGGML_NATIVE=OFF" if options else "-DGGML_NATIVE=ON"
    chosen = [f"-D{name}={'ON' if on else 'OFF'}" for name, on in options.items()]
    return " ".join([native, *chosen, *FIXED_ARGS])


def build_dir(args: str) -> Path:
    """The cache folder of one (version, flags) build: its wheel, environment and record.
    A native build (off x86) compiles for the CPU it runs on, so the CPU's flags join the key."""
    text = f"{LLAMA_CPP_VERSION}\n{args}"
    if "-DGGML_NATIVE=ON" in args:
        text += "\n" + " ".join(sorted(cpu_flags()))
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    return CACHE / f"llama-cpp-python-{LLAMA_CPP_VERSION}-{key}"


def llama_python(args: str, log=sys.stderr) -> str:  # type: ignore[no-untyped-def]
    """An interpreter whose ``llama_cpp`` was built from source with exactly ``args``.

    The wheel is built once (about 11 minutes on two cores, at low priority) and kept, with
    a virtual environment that has it, in ``build_dir(args)``; a rerun reuses both."""
    folder = build_dir(args)
    wheels, env = folder / "wheels", folder / "venv"
    python = env / "bin" / "python"
    record = folder / "build.json"
    pattern = f"llama_cpp_python-{LLAMA_CPP_VERSION}-*.whl"
    if not list(wheels.glob(pattern)):
        wheels.mkdir(parents=True, exist_ok=True)
        print(f"building llama-cpp-python {LLAMA_CPP_VERSION} from source (about 11 minutes "
              f"on two cores) into {folder}\n  CMAKE_ARGS={args}\n  log: {folder / 'build.log'}",
              file=log, flush=True)
        with open(folder / "build.log", "w") as out:
            # --no-cache-dir: never reuse (or feed) pip's wheel cache, which ignores CMAKE_ARGS;
            # --no-binary: never take a prebuilt wheel from the index instead of this build.
            subprocess.run(["nice", "-n", "19", sys.executable, "-m", "pip", "wheel", "-v",
                            "--no-deps", "--no-cache-dir", "--no-binary", "llama-cpp-python",
                            "-w", str(wheels), f"llama-cpp-python=={LLAMA_CPP_VERSION}"],
                           env={**os.environ, "CMAKE_ARGS": args}, stdout=out,
                           stderr=subprocess.STDOUT, check=True)
        built = [w.name for w in wheels.glob(pattern)]
        record.write_text(json.dumps({"version": LLAMA_CPP_VERSION, "cmake_args": args,
                                      "wheels": built, "built_on": cpu_line()}, indent=1))
    if not (python.exists() and _has_llama(python)):
        venv.create(env, with_pip=True, clear=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy",
                        *map(str, wheels.glob(pattern))], check=True)
    return str(python)


def _has_llama(python: Path) -> bool:
    return subprocess.run([str(python), "-c", "import llama_cpp"], capture_output=True,
                          check=False).returncode == 0


# --- what the build reports ------------------------------------------------------------------

def system_info() -> str:
    """llama.cpp's own account of its backends and compiled-in CPU features (run where
    ``llama_cpp`` is importable)."""
    import llama_cpp  # type: ignore[import-not-found]

    info: bytes = llama_cpp.llama_print_system_info()
    return info.decode().strip()


def reported_features(info: str) -> set[str]:
    """The features ``info`` lists with value 1 (``CPU : SSE3 = 1 | AVX = 1 | ...``)."""
    found = set()
    for part in info.replace(":", "|").split("|"):
        name, _, value = part.partition("=")
        if value.strip() == "1":
            found.add(name.strip())
    return found


def check_build(options: dict[str, bool], info: str) -> list[str]:
    """Differences between the options a build was asked for and what it reports: an option
    that is ON but not compiled in, or AVX-512/AMX compiled in though asked OFF."""
    got = reported_features(info)
    problems = []
    for name, on in options.items():
        feature = REPORTED.get(name)
        if feature is None:
            continue
        if on and feature not in got:
            problems.append(f"{name}=ON but llama.cpp does not report {feature}")
        if not on and feature in got and ("AVX512" in name or "AMX" in name):
            problems.append(f"{name}=OFF but llama.cpp reports {feature}")
    return problems

"""Build agent modules from source: WAT, C (clang + wasi-libc) and AssemblyScript.

``build_agent(source)`` picks the toolchain from the file's extension:

- ``.wat`` / ``.wast``: wasmtime's own text parser; nothing to install.
- ``.c``: clang for ``wasm32-wasi`` as a reactor (``_initialize`` instead of ``main``), with
  wasi-libc and the wasm32 compiler-rt builtins; ``workbench_agent.h`` is on the include path.
- ``.ts``: the AssemblyScript compiler ``asc`` (npm package ``assemblyscript``), with the stub
  runtime (a fresh instance per step never needs a garbage collector) and no ``env.abort``
  import, so the module imports nothing but ``host``.

A missing toolchain raises :class:`~workbench.errors.ToolchainMissing` naming the package to
install; a compiler that rejects the source raises :class:`~workbench.errors.AgentBuildError`
with the compiler's output. The output file is written atomically: a failed build never leaves
a half-written module behind, and an existing one is replaced only by a complete new one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import wasmtime

from workbench.errors import AgentBuildError, ConfigError, ToolchainMissing

__all__ = ["ASSEMBLYSCRIPT_VERSION", "HEADER_DIR", "SOURCE_SUFFIXES", "build_agent",
           "find_asc", "find_clang", "toolchains"]

ASSEMBLYSCRIPT_VERSION = "0.27.37"
"""The AssemblyScript release the examples and tests are built with."""

HEADER_DIR = Path(__file__).resolve().parent
"""Folder holding ``workbench_agent.h``, passed to clang with ``-I``."""

BUILD_TIMEOUT_S = 300.0
"""A compiler that runs longer than this is killed and the build fails."""

_MAX_DIAGNOSTICS = 8000  # characters of compiler output kept in an AgentBuildError

_APT_C = "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32"
_NPM_ASC = f"npm install --prefix <agent folder> assemblyscript@{ASSEMBLYSCRIPT_VERSION}"

C_FLAGS: tuple[str, ...] = (
    "--target=wasm32-wasi",
    "-mexec-model=reactor",
    "-O2",
    "-Wall",
    "-Werror=implicit-function-declaration",
    "-Wl,--export-if-defined=alloc",
    "-Wl,--export-if-defined=step",
    "-Wl,--strip-debug",
)
"""Flags for every C agent. A function WASI lacks (``fork``, ``socket``, ``popen``) is a
compile error rather than a silent implicit declaration."""

ASC_FLAGS: tuple[str, ...] = ("-O3", "--runtime", "stub", "--use", "abort=")
"""Flags for every AssemblyScript agent: the stub runtime never frees (each step runs in a
fresh instance), and ``abort=`` turns a failed assertion into a trap instead of an
``env.abort`` import the sandbox would refuse."""


def build_agent(source: Path | str, output: Path | str | None = None) -> Path:
    """Compile ``source`` to a WebAssembly module and return the module's path.

    ``output`` defaults to the source path with the suffix ``.wasm``. Raises ``ConfigError``
    for an unknown extension, ``FileNotFoundError`` for a missing source,
    ``ToolchainMissing`` (which is a ``FileNotFoundError`` too) when the compiler is not
    installed, and ``AgentBuildError`` when it rejects the source or runs past
    ``BUILD_TIMEOUT_S``.
    """
    src = Path(source)
    builder = _BUILDERS.get(src.suffix.lower())
    if builder is None:
        raise ConfigError(
            f"cannot build {src}: unknown extension {src.suffix!r}; "
            f"agents are built from {', '.join(SOURCE_SUFFIXES)}"
        )
    if not src.is_file():
        raise FileNotFoundError(f"agent source {src} does not exist")
    out = Path(output) if output is not None else src.with_suffix(".wasm")
    with _atomic_output(out) as tmp:
        builder(src, tmp)
    return out


def toolchains(near: Path | None = None) -> dict[str, str]:
    """What ``build_agent`` would use, per language: the command, or why it is missing.

    ``near`` is where an AssemblyScript source would live (default: the current folder).
    Never raises; for ``workbench doctor``.
    """
    found = {"wat": "wasmtime.wat2wasm (built in)"}
    probes: dict[str, Callable[[], object]] = {
        "c": find_clang,
        "assemblyscript": lambda: " ".join(find_asc((near or Path.cwd()) / "agent.ts")),
    }
    for language, probe in probes.items():
        try:
            found[language] = str(probe())
        except ToolchainMissing as err:
            found[language] = f"not found: {err.install}"
    return found


# --- WAT ---------------------------------------------------------------------------------


def _build_wat(source: Path, out: Path) -> None:
    try:
        out.write_bytes(wasmtime.wat2wasm(source.read_text(encoding="utf-8")))
    except wasmtime.WasmtimeError as err:
        raise AgentBuildError(str(source), "wat2wasm", str(err)) from err


# --- C -----------------------------------------------------------------------------------


def find_clang() -> str:
    """The clang to use: ``$WORKBENCH_CLANG``, else ``clang`` or ``clang-NN`` on PATH."""
    configured = os.environ.get("WORKBENCH_CLANG")
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise ToolchainMissing(f"clang ({configured!r} from WORKBENCH_CLANG)",
                                   "fix WORKBENCH_CLANG or unset it")
        return found
    for name in ("clang", *(f"clang-{v}" for v in range(20, 13, -1))):
        found = shutil.which(name)
        if found is not None:
            return found
    raise ToolchainMissing("clang", f"install the C toolchain for agents: {_APT_C}")


def c_command(clang: str, source: Path, out: Path) -> list[str]:
    """The clang command line for one C agent (one translation unit)."""
    cmd = [clang, *C_FLAGS, f"-I{HEADER_DIR}"]
    sysroot = os.environ.get("WORKBENCH_WASI_SYSROOT")
    if sysroot:
        cmd.append(f"--sysroot={sysroot}")
    return [*cmd, "-o", str(out), str(source)]


def _build_c(source: Path, out: Path) -> None:
    clang = find_clang()
    result = _run(c_command(clang, source, out), source, "clang")
    if result.returncode != 0:
        diagnostics = result.stdout + result.stderr
        raise _c_missing_part(diagnostics, clang) or AgentBuildError(
            str(source), "clang", _tail(diagnostics))


def _c_missing_part(diagnostics: str, clang: str) -> ToolchainMissing | None:
    """Tell a broken C toolchain from a broken source, by what clang could not find."""
    if re.search(r"'(stdlib|stdio|string|stdint|stddef)\.h' file not found", diagnostics):
        return ToolchainMissing("wasi-libc (the C library for wasm32-wasi)",
                                "apt-get install wasi-libc, or set WORKBENCH_WASI_SYSROOT "
                                "to a wasi-sysroot folder")
    if "libclang_rt.builtins-wasm32.a" in diagnostics:
        return ToolchainMissing("the wasm32 compiler-rt builtins",
                                f"apt-get install libclang-rt-{_major(clang)}-dev-wasm32")
    if re.search(r'"?wasm-ld"?.*(not found|doesn\'t exist|No such file)', diagnostics):
        return ToolchainMissing("wasm-ld (the WebAssembly linker)", "apt-get install lld")
    return None


def _major(clang: str) -> str:
    """clang's major version ("14"), which Debian's compiler-rt package names carry."""
    try:
        version = subprocess.run([clang, "-dumpversion"], capture_output=True, text=True,
                                 timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    return version.split(".")[0].strip() or "NN"


# --- AssemblyScript ----------------------------------------------------------------------


def find_asc(source: Path) -> list[str]:
    """The command that runs asc: ``$WORKBENCH_ASC``, else ``node_modules`` next to the source
    or in a folder above it, else ``asc`` on PATH."""
    configured = os.environ.get("WORKBENCH_ASC")
    if configured:
        return _asc_command(Path(configured))
    for folder in (source.resolve().parent, *source.resolve().parents):
        script = folder / "node_modules" / "assemblyscript" / "bin" / "asc.js"
        if script.is_file():
            return _asc_command(script)
    found = shutil.which("asc")
    if found is not None:
        return [found]
    raise ToolchainMissing(
        "the AssemblyScript compiler (asc)",
        f"install it next to the agent: {_NPM_ASC} (Node.js 18 or newer), "
        "or set WORKBENCH_ASC to its bin/asc.js",
    )


def _asc_command(script: Path) -> list[str]:
    if not script.is_file():
        raise ToolchainMissing(f"asc ({script})", "fix WORKBENCH_ASC or unset it")
    if script.suffix != ".js":
        return [str(script)]
    node = shutil.which("node")
    if node is None:
        raise ToolchainMissing("node (Node.js, which runs asc)",
                               "apt-get install nodejs (Node.js 18 or newer)")
    return [node, str(script)]


def _build_ts(source: Path, out: Path) -> None:
    asc = find_asc(source)
    result = _run([*asc, str(source), "--outFile", str(out), *ASC_FLAGS], source, "asc")
    if result.returncode != 0 or not out.stat().st_size:
        raise AgentBuildError(str(source), "asc", _tail(result.stdout + result.stderr))


# --- shared ------------------------------------------------------------------------------


def _run(cmd: Sequence[str], source: Path, tool: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=BUILD_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        raise AgentBuildError(str(source), tool,
                              f"still running after {BUILD_TIMEOUT_S:.0f} s; killed") from err


@contextmanager
def _atomic_output(out: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``out``; move it onto ``out`` only if the body succeeds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o644)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _tail(text: str) -> str:
    return text if len(text) <= _MAX_DIAGNOSTICS else "..." + text[-_MAX_DIAGNOSTICS:]


_BUILDERS: dict[str, Callable[[Path, Path], None]] = {
    ".wat": _build_wat,
    ".wast": _build_wat,
    ".c": _build_c,
    ".ts": _build_ts,
}

SOURCE_SUFFIXES: tuple[str, ...] = tuple(_BUILDERS)
"""File extensions ``build_agent`` accepts."""

"""The Python-agent runtime component: built once per workbench version, then cached.

One component (CPython built for WebAssembly by componentize-py, with the guest runtime in
``guest/`` and the WIT world in ``agent.wit``) serves every sandboxed Python agent; each
agent's source is data passed to its ``step``. Building it takes seconds to tens of seconds
and compiling it for wasmtime as long again, so both happen on first use and the compiled
form is kept under the cache folder (``$WORKBENCH_CACHE``, see ``_cachedir``) in a folder
named by a hash of the guest sources, the componentize-py version and the engine settings:
a new workbench version (or wasmtime) builds a new runtime, an unchanged one never again.
A progress bar shows the two stages. Loading the cached form takes milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from workbench.errors import ConfigError

__all__ = ["BUILD_TIMEOUT_S", "WORLD", "guest_dir", "runtime_key", "runtime_path"]

WORLD = "python-agent"
BUILD_TIMEOUT_S = 600.0
"""Longest componentize-py may take to build the runtime (seconds)."""
_HERE = Path(__file__).resolve().parent
_GUEST_APP = "wb_agent_runtime"
_FILE = "runtime.cwasm"


def guest_dir() -> Path:
    return _HERE / "guest"


def wit_file() -> Path:
    return _HERE / "agent.wit"


def runtime_key() -> str:
    """What the compiled runtime depends on: the guest sources, the WIT world, the
    workbench, componentize-py and wasmtime versions and the engine settings."""
    from workbench._pysandbox._sandbox import engine_fingerprint

    digest = hashlib.sha256()
    for path in (wit_file(), guest_dir() / f"{_GUEST_APP}.py"):
        digest.update(path.read_bytes())
    for dist in ("workbench", "componentize-py"):
        digest.update(f"{dist}={_version(dist)};".encode())
    digest.update(engine_fingerprint().encode())
    return digest.hexdigest()[:24]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def runtime_path(cache_dir: Path | None = None, *, progress: bool = True) -> Path:
    """The compiled runtime component, built and compiled first if it is not cached.

    Raises ConfigError when componentize-py is missing or fails (its message included).
    Safe across processes: one builds, the others wait for it (a file lock).
    """
    from workbench._cachedir import cache_root

    folder = cache_root(cache_dir) / "pysandbox" / runtime_key()
    target = folder / _FILE
    if _complete(target):
        return target
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(folder / ".lock"):
        if not _complete(target):
            _build(target, progress)
    return target


def _complete(target: Path) -> bool:
    """Whether ``target`` was written whole (its digest file is written after it)."""
    digest = target.with_suffix(".sha256")
    try:
        return digest.read_text().strip() == str(target.stat().st_size)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(target: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    from workbench._pysandbox._sandbox import compile_component

    with tqdm(total=2, desc="Python-agent runtime (once per workbench version)",
              unit="stage", disable=not progress) as bar, \
            tempfile.TemporaryDirectory(prefix="wb-pyruntime-") as tmp:
        bar.set_postfix_str("componentize-py")
        wasm = Path(tmp) / "runtime.wasm"
        _componentize(wasm)
        bar.update(1)
        bar.set_postfix_str("compiling for wasmtime")
        compiled = compile_component(wasm.read_bytes())
        bar.update(1)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".cwasm")
    with os.fdopen(fd, "wb") as out:
        out.write(compiled)
    os.replace(tmp_name, target)
    target.with_suffix(".sha256").write_text(str(len(compiled)))


def _componentize(output: Path) -> None:
    """Run componentize-py: all WASI imports stubbed (the guest gets no system interface)."""
    tool = shutil.which("componentize-py", path=str(Path(sys.executable).parent)) \
        or shutil.which("componentize-py")
    if tool is None:
        raise ConfigError("componentize-py is not installed; sandboxed Python agents need it: "
                          "pip install 'componentize-py>=0.25,<0.26'")
    command = [tool, "-q", "-d", str(wit_file()), "-w", WORLD, "componentize", "--stub-wasi",
               "-p", str(guest_dir()), "-o", str(output), _GUEST_APP]
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR", "LANG")}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env,
                              cwd=output.parent, timeout=BUILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"componentize-py took over {BUILD_TIMEOUT_S:.0f} s to build the "
                          "Python-agent runtime") from None
    if done.returncode != 0 or not output.is_file():
        raise ConfigError("componentize-py failed to build the Python-agent runtime: "
                          f"{(done.stderr or done.stdout).strip()[-2000:]}")

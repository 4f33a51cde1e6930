"""Disk cache of compiled WebAssembly modules.

Compiling is the slow part of loading an agent (milliseconds for a small agent, tens of
seconds for a large runtime), so compiled code is kept in a directory, one file per
(wasm sha256, wasmtime version, engine settings). Each file starts with the sha256 of the
compiled bytes, checked before wasmtime deserializes them: a torn or damaged file is
recompiled, never loaded. Deserializing trusts the bytes to be code this process compiled,
so the directory must be writable only by its owner, like any other cache of executables.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import wasmtime

__all__ = ["ModuleCache", "cache_key"]

_DIGEST = 32


def cache_key(wasm_sha256: str, engine_fingerprint: str) -> str:
    """The file stem for a module: its wasm hash plus a hash of the engine's identity."""
    engine = hashlib.sha256(engine_fingerprint.encode("utf-8")).hexdigest()[:16]
    return f"{wasm_sha256}-{engine}"


class ModuleCache:
    """Compiled modules under ``directory`` (created on first store).

    Failures to read or write the cache are never fatal: the module is compiled instead.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.cwasm"

    def load_or_compile(self, engine: wasmtime.Engine, key: str,
                        compile_: Callable[[], wasmtime.Module]) -> wasmtime.Module:
        """The cached module for ``key``, or ``compile_()`` stored under ``key``.

        Raises whatever ``compile_`` raises (a WasmtimeError for an invalid module).
        """
        module = self._load(engine, key)
        if module is not None:
            return module
        module = compile_()
        self._store(key, bytes(module.serialize()))
        return module

    def _load(self, engine: wasmtime.Engine, key: str) -> wasmtime.Module | None:
        path = self.path(key)
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        digest, payload = blob[:_DIGEST], blob[_DIGEST:]
        if len(digest) != _DIGEST or hashlib.sha256(payload).digest() != digest:
            self._discard(path)
            return None
        try:
            return wasmtime.Module.deserialize(engine, payload)
        except wasmtime.WasmtimeError:
            self._discard(path)
            return None

    def _store(self, key: str, payload: bytes) -> None:
        blob = hashlib.sha256(payload).digest() + payload
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".cwasm")
        except OSError:
            return
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, self.path(key))
        except OSError:
            self._discard(Path(tmp))

    @staticmethod
    def _discard(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()

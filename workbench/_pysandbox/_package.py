"""The agent package: a sandboxed Python agent's code as data, the bytes the journal names.

A package is ``MAGIC`` followed by canonical JSON: the pieces of source the agent needs (each
with the line of the cell it starts at), the name of the entry and whether it is a function or
a class. Its sha256 is the agent's code hash in the journal, and the run stores it beside the
journal (``modules/<sha256>.wasm``, as WebAssembly modules), so ``replay`` and forks find it.
What a worker is sent is the package plus the path of the compiled runtime component
(:func:`with_runtime`), which never enters the hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from workbench.errors import InvalidModule

__all__ = ["MAGIC", "AgentPackage", "is_package", "read_package"]

MAGIC = b"\0wbpy1\n"
"""The first bytes of a package (never valid WebAssembly: a module starts ``\\0asm``)."""
MAX_PACKAGE_BYTES = 1 << 20
"""Largest package: an agent's captured source, 1 MiB."""


@dataclass(frozen=True)
class Piece:
    """One top-level definition or assignment of the agent, at its line in the cell."""

    code: str
    line: int


@dataclass(frozen=True)
class AgentPackage:
    entry: str
    kind: str  # "function" or "class"
    pieces: tuple[Piece, ...]
    runtime: str | None = None  # the compiled runtime's path, in transit to a worker only

    def to_bytes(self) -> bytes:
        """The canonical package (without the runtime path): what is hashed and stored."""
        return MAGIC + _canonical(self._body())

    def with_runtime(self, path: str) -> bytes:
        """The package a worker loads: the canonical one plus where the runtime is."""
        return MAGIC + _canonical({**self._body(), "runtime": path})

    def guest_json(self, capabilities: tuple[str, ...]) -> str:
        """The ``agent`` argument of the runtime's ``step``."""
        return json.dumps({**self._body(), "capabilities": list(capabilities)},
                          ensure_ascii=False)

    def _body(self) -> dict[str, Any]:
        return {"entry": self.entry, "kind": self.kind,
                "pieces": [{"code": p.code, "line": p.line} for p in self.pieces]}


def is_package(data: bytes | bytearray) -> bool:
    return bytes(data[: len(MAGIC)]) == MAGIC


def read_package(data: bytes, source: str) -> AgentPackage:
    """Parse a package. Raises InvalidModule (naming ``source``) when it is not one."""
    if not is_package(data):
        raise InvalidModule(source, "it is not a sandboxed Python agent package")
    if len(data) > MAX_PACKAGE_BYTES + 4096:
        raise InvalidModule(source, f"the package is {len(data)} bytes, over the limit of "
                            f"{MAX_PACKAGE_BYTES}")
    try:
        body = json.loads(data[len(MAGIC):].decode("utf-8"))
        pieces = tuple(Piece(str(p["code"]), int(p["line"])) for p in body["pieces"])
        kind = str(body["kind"])
        if kind not in ("function", "class") or not pieces:
            raise ValueError(f"kind {kind!r} with {len(pieces)} pieces")
        runtime = body.get("runtime")
        return AgentPackage(str(body["entry"]), kind, pieces,
                            None if runtime is None else str(runtime))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidModule(source, f"its package is damaged ({exc})") from None


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
                      ).encode("utf-8")

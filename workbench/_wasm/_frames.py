"""Length-prefixed frames between the kernel and a worker process.

A frame is a 9-byte header ``length:u32le | request id:u32le | kind:u8`` followed by
``length`` bytes of payload. Structured payloads are ``meta length:u32le | meta JSON | blob``
(:func:`pack` / :func:`unpack`), so bulk bytes (a module, a step's input or output) are never
re-encoded as JSON. Every frame is bounded by ``max_frame`` bytes: a sender gets
:class:`~workbench.errors.FrameTooLarge` before anything is written, a receiver that sees a
longer header stops with the same error (the peer is broken; the pool replaces the worker).
The end of the stream (the peer died) is a clean ``None`` from :meth:`FrameReader.read`.
"""

from __future__ import annotations

import enum
import json
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Any

from workbench.errors import FrameTooLarge

DEFAULT_MAX_FRAME = 256 * 1024 * 1024
"""Largest payload accepted either way (a compiled-in Python runtime component is ~18 MB)."""
MAX_META = 1024 * 1024
"""Largest JSON meta part of a structured payload."""

_HEADER = struct.Struct("<IIB")
_META_LEN = struct.Struct("<I")
_SMALL = 64 * 1024  # payloads up to this size are sent with their header in one call


class Kind(enum.IntEnum):
    """What a frame is. Direction: K = kernel → worker, W = worker → kernel."""

    LOAD = 1  # K: compile/load an agent module (meta: agent, source, capabilities; blob: wasm)
    LOADED = 2  # W: load finished (meta: ok, or error kind and reason)
    STEP = 3  # K: run one step (meta: agent, limits; blob: input JSON)
    HOST_CALL = 4  # W: the guest called a host function (meta: fn; blob: argument)
    HOST_REPLY = 5  # K: the host call's answer (meta: ok/error; blob: result)
    RESULT = 6  # W: the step's output bytes (blob)
    FAULT = 7  # W: the step faulted (meta: kind, detail, data)
    PING = 8  # K: liveness/latency probe; echoed as PONG with the same payload
    PONG = 9  # W
    SHUTDOWN = 10  # K: exit cleanly
    UNLOAD = 11  # K: forget an agent (meta: agent)


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Kind
    rid: int  # request id; replies and host calls carry the id of the request they serve
    payload: bytes


class FrameReader:
    """Reads frames from a connected socket. Use from one thread only."""

    def __init__(self, sock: socket.socket, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._file = sock.makefile("rb", buffering=256 * 1024)
        self._max = max_frame

    def read(self) -> Frame | None:
        """The next frame, or None at end of stream (also for a frame cut short by the
        peer's death). Raises FrameTooLarge or ValueError (unknown kind) for a broken peer."""
        header = self._file.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return None
        length, rid, kind = _HEADER.unpack(header)
        if length > self._max:
            raise FrameTooLarge(length, self._max, "received frame")
        payload = self._file.read(length) if length else b""
        if len(payload) < length:
            return None
        return Frame(Kind(kind), rid, payload)

    def close(self) -> None:
        self._file.close()


class FrameWriter:
    """Writes whole frames to a connected socket; safe to share between threads."""

    def __init__(self, sock: socket.socket, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._sock = sock
        self._max = max_frame
        self._lock = threading.Lock()

    def write(self, kind: Kind, rid: int, payload: bytes = b"") -> None:
        """Send one frame. Raises FrameTooLarge (nothing sent) or OSError (peer gone)."""
        if len(payload) > self._max:
            raise FrameTooLarge(len(payload), self._max, f"{kind.name} frame")
        header = _HEADER.pack(len(payload), rid & 0xFFFFFFFF, kind)
        with self._lock:
            if len(payload) <= _SMALL:
                self._sock.sendall(header + payload)
            else:
                self._sock.sendall(header)
                self._sock.sendall(payload)


def pack(meta: dict[str, Any], blob: bytes = b"") -> bytes:
    """A structured payload: JSON ``meta`` then raw ``blob``."""
    head = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    return _META_LEN.pack(len(head)) + head + blob


def unpack(payload: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a structured payload. Raises ValueError if it is malformed."""
    if len(payload) < _META_LEN.size:
        raise ValueError("frame payload shorter than its meta length")
    (size,) = _META_LEN.unpack_from(payload)
    end = _META_LEN.size + size
    if size > MAX_META or end > len(payload):
        raise ValueError(f"frame meta length {size} is out of bounds")
    meta = json.loads(payload[_META_LEN.size:end].decode("utf-8"))
    if not isinstance(meta, dict):
        raise ValueError("frame meta is not a JSON object")
    return meta, payload[end:]

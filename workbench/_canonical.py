"""Canonical JSON: the one byte encoding of everything journaled or hashed.

Sorted keys, no whitespace, UTF-8, no NaN/Infinity. Two equal values always encode to the
same bytes, so journals can be compared byte for byte.
"""

from __future__ import annotations

import hashlib
import json

from workbench._types import JSON


def dumps(value: JSON) -> bytes:
    """Encode ``value``. Raises ValueError for NaN/Infinity and TypeError for non-JSON types."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def loads(data: bytes) -> JSON:
    """Decode canonical (or any) JSON bytes. Raises ValueError on bad UTF-8 or bad JSON."""
    return json.loads(data.decode("utf-8"))


def digest(value: JSON) -> str:
    """Short content hash of a JSON value (hex sha256 of its canonical bytes)."""
    return hashlib.sha256(dumps(value)).hexdigest()


def check_json(value: JSON) -> JSON:
    """Return a canonical copy of ``value``; raises ValueError/TypeError if not plain JSON.

    Tuples become lists, so the value compares equal after a journal round trip.
    """
    return json.loads(dumps(value))

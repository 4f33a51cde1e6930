"""Counter-based derivation of every 'random' value from the run seed.

A value is a pure function of (seed, purpose, agent, counters): no generator state exists,
so a step re-run after a crash, a replay, or a fork draws exactly the same numbers.
"""

from __future__ import annotations

import hashlib


def derive_u64(seed: int, purpose: str, agent: str, *counters: int) -> int:
    """A uniform 64-bit value for (seed, purpose, agent, counters)."""
    h = hashlib.blake2b(digest_size=8, person=b"workbench-v1")
    h.update(f"{seed}\x00{purpose}\x00{agent}".encode())
    for c in counters:
        h.update(b"\x00" + str(c).encode())
    return int.from_bytes(h.digest(), "little")


def logical_now(step: int, call_index: int) -> int:
    """Logical time in nanoseconds: one second per step, one nanosecond per call within it."""
    return max(step, 0) * 1_000_000_000 + call_index

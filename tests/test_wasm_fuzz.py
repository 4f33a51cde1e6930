"""2,000 seeded mutations of a valid agent module: each is rejected with InvalidModule and a
message, or compiles and runs to a clean StepOutcome. Nothing else may escape.

In-process: wasmtime's validator and compiler are trusted not to crash the process (the
worker pool adds compile-in-a-worker under a time limit on top of this).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from wasm_helpers import ALL_CAPS, EXAMPLES, PAGE, FakeHost, leb128, wasm

from workbench._types import Message, StepRequest
from workbench._wasm._abi import StepOutcome, encode_input, outcome_to_result
from workbench._wasm._sandbox import compile_module, run_step
from workbench.errors import InvalidModule

MUTATIONS = 2000
SEED = 20240607


def _sections(module: bytes) -> list[tuple[int, int]]:
    """(start, end) of every section after the 8-byte header."""
    spans, pos = [], 8
    while pos < len(module):
        start, pos = pos, pos + 1
        size = shift = 0
        while True:
            byte = module[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        pos += size
        spans.append((start, pos))
    return spans


def truncate(rng: random.Random, m: bytes) -> bytes:
    return m[: rng.randrange(len(m))]


def flip_bytes(rng: random.Random, m: bytes) -> bytes:
    out = bytearray(m)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(8, len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def random_bytes(rng: random.Random, m: bytes) -> bytes:
    out = bytearray(m)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def insert_section(rng: random.Random, m: bytes) -> bytes:
    body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
    section = bytes([rng.randrange(14)]) + leb128(len(body)) + body
    at = rng.choice([start for start, _ in _sections(m)] + [len(m)])
    return m[:at] + section + m[at:]


def drop_or_repeat_section(rng: random.Random, m: bytes) -> bytes:
    start, end = rng.choice(_sections(m))
    if rng.random() < 0.5:
        return m[:start] + m[end:]
    return m[:end] + m[start:end] + m[end:]


def swap_sections(rng: random.Random, m: bytes) -> bytes:
    spans = _sections(m)
    i = rng.randrange(len(spans) - 1)
    (a0, a1), (b0, b1) = spans[i], spans[i + 1]
    return m[:a0] + m[b0:b1] + m[a0:a1] + m[b1:]


MUTATORS: list[Callable[[random.Random, bytes], bytes]] = [
    truncate, flip_bytes, random_bytes, insert_section, drop_or_repeat_section, swap_sections,
]


def test_mutated_modules_are_rejected_or_run_cleanly() -> None:
    bases = [wasm((EXAMPLES / name).read_text()) for name in ("counter.wat", "critic.wat")]
    rng = random.Random(SEED)
    tally: Counter[str] = Counter()
    for i in range(MUTATIONS):
        mutator = MUTATORS[i % len(MUTATORS)]
        mutant = mutator(rng, bases[(i // len(MUTATORS)) % len(bases)])
        try:
            agent = compile_module(mutant, source=f"mutant {i}", capabilities=ALL_CAPS)
        except InvalidModule as exc:
            assert exc.reason, f"mutant {i} ({mutator.__name__}): empty reason"
            tally["rejected"] += 1
            continue
        msg = Message(sender="w", seq=0, step=0, to="a", payload={"draft": i})
        input_json = encode_input(StepRequest(agent="a", step=1, state=i, inbox=(msg,)))
        outcome = run_step(agent, input_json, FakeHost(), fuel=200_000,
                           memory_bytes=16 * PAGE, timeout_s=5.0, max_output_bytes=1 << 16)
        assert isinstance(outcome, StepOutcome)
        result = outcome_to_result(outcome, max_output_bytes=1 << 16)
        tally[result.fault.kind if result.fault else "ran"] += 1
    assert sum(tally.values()) == MUTATIONS
    # the mutations reach both sides: rejected modules and modules that still run
    assert tally["rejected"] > MUTATIONS // 4
    assert tally["ran"] + sum(v for k, v in tally.items() if k not in ("rejected", "ran")) > 50

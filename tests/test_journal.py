"""Journal framing: torn tails recover, any other damage is JournalCorrupt."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import workbench as wb
from tests.scenarios import build
from workbench._journal import MAGIC, JournalWriter, parse_journal, read_journal
from workbench.errors import JournalCorrupt, RecordTooLarge


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("j") / "run.wbj"
    with build(3, 42, path) as run:
        run.run(20)
    return path.read_bytes()


def test_round_trip(tmp_path: Path) -> None:
    with JournalWriter(tmp_path / "j.wbj") as w:
        w.append({"k": "run", "x": [1, 2.5, "é", None, True]})
        w.stage({"k": "a", "t": 1})
        w.stage({"k": "b", "t": 1})
        w.flush()
    j = read_journal(tmp_path / "j.wbj")
    assert j.records == [{"k": "run", "x": [1, 2.5, "é", None, True]},
                         {"k": "a", "t": 1}, {"k": "b", "t": 1}]
    assert j.torn_bytes == 0


def test_truncation_at_every_offset_of_the_last_record_recovers(recorded: bytes) -> None:
    full = parse_journal(recorded)
    last = full.offsets[-1]
    for cut in range(last, len(recorded)):
        j = parse_journal(recorded[:cut])
        assert j.records == full.records[:-1], cut
        assert j.end == last
        assert j.torn_bytes == cut - last


def test_truncated_magic_is_an_empty_journal() -> None:
    for cut in range(len(MAGIC)):
        assert parse_journal(MAGIC[:cut]).records == []


def test_flipped_bits_outside_the_tail_raise_journal_corrupt(recorded: bytes) -> None:
    full = parse_journal(recorded)
    rng = random.Random(0)
    positions = list(range(full.offsets[-1]))
    checked = 0
    for pos in rng.sample(positions, min(3000, len(positions))) + list(range(len(MAGIC) + 16)):
        damaged = bytearray(recorded)
        damaged[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(JournalCorrupt) as info:
            parse_journal(bytes(damaged))
        assert info.value.offset <= pos
        checked += 1
    assert checked > 1000


def test_flipped_bits_in_the_last_record_are_corrupt_not_torn(recorded: bytes) -> None:
    full = parse_journal(recorded)
    for pos in range(full.offsets[-1], len(recorded)):
        damaged = bytearray(recorded)
        damaged[pos] ^= 0x10
        with pytest.raises(JournalCorrupt):
            parse_journal(bytes(damaged))


def test_record_too_large_is_refused_before_writing(tmp_path: Path) -> None:
    with JournalWriter(tmp_path / "j.wbj", max_record_bytes=100) as w:
        w.append({"k": "small"})
        size = w.size
        with pytest.raises(RecordTooLarge) as info:
            w.stage({"k": "big", "blob": "x" * 200})
        assert info.value.limit == 100
        assert w.size == size
    assert len(read_journal(tmp_path / "j.wbj")) == 1


def test_append_mode_drops_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "j.wbj"
    with JournalWriter(path) as w:
        w.append({"k": "one"})
        w.append({"k": "two"})
    path.write_bytes(path.read_bytes()[:-3])
    with JournalWriter(path, append=True) as w:
        w.append({"k": "three"})
    assert [r["k"] for r in read_journal(path)] == ["one", "three"]


def test_not_a_journal(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"hello world, not a journal")
    with pytest.raises(JournalCorrupt, match="bad magic"):
        wb.read_journal(tmp_path / "x")


def test_corrupt_journal_is_also_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        wb.read_journal(tmp_path / "missing.wbj")


def test_every_step_has_its_commit(recorded: bytes) -> None:
    records = parse_journal(recorded).records
    kinds = [r["k"] for r in records]
    assert kinds[0] == "run"
    assert kinds.count("step") == kinds.count("commit")

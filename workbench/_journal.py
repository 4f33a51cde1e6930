"""The run journal: an append-only file of checksummed, length-prefixed JSON records.

Layout: the magic ``WBJOURNAL1\\n``, then frames::

    length: u32 LE | crc32(length bytes): u32 LE | crc32(payload): u32 LE | payload

The payload is canonical JSON of a dict whose ``"k"`` names the record kind. The header
checksum means a damaged length is detected as damage, not mistaken for a torn tail.

Reading distinguishes two failures:

- a **torn tail**, a last frame cut short by a crash (its header is intact or itself cut
  short), or zero bytes only (a file that grew before its blocks reached the disk): dropped,
  and reported as ``Journal.torn_bytes``;
- anything else (a checksum mismatch, a record that is not a JSON object, a bad magic):
  :class:`~workbench.errors.JournalCorrupt` with the byte offset.

A journal of another format version (its magic, or its run header's ``v``) raises
:class:`~workbench.errors.JournalVersionError` naming both versions.

Writers stage a step's records and write them with one ``write`` at commit, so a crash
leaves at most a torn tail, and the run-level reader drops a step that has no commit record.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from workbench import _canonical
from workbench._records import JOURNAL_VERSION, record_from_json
from workbench._records import Record as TypedRecord
from workbench._types import JSON
from workbench.errors import (
    JournalCorrupt,
    JournalError,
    JournalVersionError,
    RecordTooLarge,
    RunClosed,
)

MAGIC = b"WBJOURNAL1\n"
_ANY_MAGIC = re.compile(rb"WBJOURNAL(\d{1,9})(?:\n|$)")  # any version's, to name it
_FRAME = struct.Struct("<III")
DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024
"""Largest payload a record may have. Larger records raise RecordTooLarge when staged."""

Record = dict[str, JSON]


@dataclass
class Journal:
    """The records of a journal file, as read."""

    path: str
    records: list[Record] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)  # byte offset of each record's frame
    end: int = len(MAGIC)  # offset just past the last intact record
    torn_bytes: int = 0  # bytes of a torn tail that were dropped

    def __len__(self) -> int:
        return len(self.records)

    @functools.cached_property
    def typed(self) -> list[TypedRecord]:
        """The records as their ``_records`` classes. Raises JournalCorrupt (with the
        record's offset) for one whose kind or fields are malformed."""
        return [record_from_json(r, path=self.path, offset=o)
                for r, o in zip(self.records, self.offsets, strict=True)]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __repr__(self) -> str:
        torn = f", torn tail of {self.torn_bytes} bytes dropped" if self.torn_bytes else ""
        return f"<Journal {self.path!r}: {len(self.records)} records, {self.end} bytes{torn}>"


def encode_record(record: Mapping[str, JSON], max_record_bytes: int) -> bytes:
    """One frame for ``record``. Raises RecordTooLarge, or ValueError for non-JSON values."""
    payload = _canonical.dumps(dict(record))
    if len(payload) > max_record_bytes:
        raise RecordTooLarge(len(payload), max_record_bytes, f"a {record.get('k')!r} record")
    length = struct.pack("<I", len(payload))
    return _FRAME.pack(len(payload), zlib.crc32(length), zlib.crc32(payload)) + payload


def read_journal(path: str | os.PathLike[str], *, upto: int | None = None,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Journal:
    """Read every intact record. Drops a torn tail; raises JournalCorrupt for other damage
    and JournalError if the file cannot be read. ``upto`` reads only the bytes before that
    offset (e.g. a ``JournalCorrupt.offset``, to recover the records before the damage)."""
    p = str(path)
    try:
        data = Path(p).read_bytes()
    except OSError as exc:
        raise JournalError(f"cannot read journal {p!r}: {exc.strerror or exc}") from exc
    return parse_journal(data if upto is None else data[:upto], p,
                         max_record_bytes=max_record_bytes)


def parse_journal(data: bytes, path: str = "<bytes>", *,
                  max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Journal:
    """Parse journal bytes; see :func:`read_journal`."""
    journal = Journal(path)
    if len(data) < len(MAGIC):
        if MAGIC.startswith(data):
            journal.end, journal.torn_bytes = 0, len(data)
            return journal
        raise _bad_magic(data, path)
    if not data.startswith(MAGIC):
        raise _bad_magic(data, path)
    pos = len(MAGIC)
    while pos < len(data):
        if not any(data[pos:pos + _FRAME.size]) and not any(data[pos:]):
            record, size = None, 0  # zeros to the end: a crash, not damage
        else:
            record, size = _read_frame(data, pos, path, max_record_bytes)
        if record is None:
            journal.torn_bytes = len(data) - pos
            break
        journal.records.append(record)
        journal.offsets.append(pos)
        pos += size
    journal.end = pos
    _check_version(journal)
    return journal


def _bad_magic(data: bytes, path: str) -> JournalError:
    """JournalVersionError for another format version's magic, else JournalCorrupt."""
    found = _ANY_MAGIC.match(data)
    if found is None:
        return JournalCorrupt(path, 0, "not a workbench journal (bad magic)")
    ours = _ANY_MAGIC.match(MAGIC)
    assert ours is not None
    return JournalVersionError(path, int(found.group(1)), int(ours.group(1)),
                               f"its magic is {found.group(0).strip().decode()}, this "
                               f"workbench's {MAGIC.strip().decode()}")


def _check_version(journal: Journal) -> None:
    """JournalVersionError if the run header says another format version (its ``v``)."""
    header = journal.records[0] if journal.records else {}
    if header.get("k") == "run" and header.get("v", JOURNAL_VERSION) != JOURNAL_VERSION:
        raise JournalVersionError(journal.path, header.get("v"), JOURNAL_VERSION,
                                  "its run header's v")


def _read_frame(data: bytes, pos: int, path: str,
                max_record_bytes: int) -> tuple[Record | None, int]:
    """(record, frame size), or (None, 0) for a torn tail."""
    if len(data) - pos < _FRAME.size:
        return None, 0
    length, header_crc, payload_crc = _FRAME.unpack_from(data, pos)
    if zlib.crc32(data[pos:pos + 4]) != header_crc:
        raise JournalCorrupt(path, pos, "record header checksum mismatch")
    if length > max_record_bytes:
        raise JournalCorrupt(path, pos, f"record length {length} exceeds {max_record_bytes}")
    start = pos + _FRAME.size
    if start + length > len(data):
        return None, 0
    payload = data[start:start + length]
    if zlib.crc32(payload) != payload_crc:
        raise JournalCorrupt(path, pos, "record payload checksum mismatch")
    try:
        record = _canonical.loads(payload)
    except ValueError as exc:
        raise JournalCorrupt(path, pos, f"record is not JSON ({exc})") from exc
    if not isinstance(record, dict) or not isinstance(record.get("k"), str):
        raise JournalCorrupt(path, pos, "record is not an object with a 'k' kind")
    return record, _FRAME.size + length


class JournalWriter:
    """Appends records to a journal file.

    ``stage`` validates and encodes a record at once (so a too-large record fails before
    anything of its step reaches the disk); ``flush`` writes every staged frame with a single
    ``write`` call (repeated only after a short write). ``sync=True`` also fsyncs each flush.
    """

    def __init__(self, path: str | os.PathLike[str], *, append: bool = False,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, sync: bool = False) -> None:
        self.path = str(path)
        self.max_record_bytes = max_record_bytes
        self._sync = sync
        self._staged: list[bytes] = []
        self.count = 0  # records in the file
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if append and os.path.exists(self.path):
            existing = read_journal(self.path, max_record_bytes=max_record_bytes)
            end, self.count = existing.end, len(existing.records)
            # Unbuffered: a failed write leaves nothing in a buffer to reach the file later.
            self._file = open(self.path, "r+b", buffering=0)  # noqa: SIM115 - closed by close()
            self._file.truncate(max(end, 0))
            self._file.seek(0, os.SEEK_END)
            if end == 0:
                self._write_all(MAGIC)
        else:
            self._file = open(self.path, "w+b", buffering=0)  # noqa: SIM115 - closed by close()
            self._write_all(MAGIC)
        self._end = self._file.tell()  # just past the last record written whole
        self._closed = False

    @property
    def size(self) -> int:
        """Bytes written so far (staged records not included)."""
        return self._file.tell()

    def stage(self, record: TypedRecord | Mapping[str, JSON]) -> None:
        """Encode ``record`` for the next flush. Raises RecordTooLarge / ValueError."""
        self._check_open()
        data = record if isinstance(record, Mapping) else record.to_json()
        self._staged.append(encode_record(data, self.max_record_bytes))

    def discard_staged(self) -> None:
        """Forget records staged since the last flush (a step that will not commit)."""
        self._staged.clear()

    def flush(self) -> list[tuple[int, int]]:
        """Write all staged records at once; returns each one's (record index, byte offset).
        If that fails (disk full ...), the file is cut back to where it was and the staged
        records are dropped, then JournalError is raised: the journal never keeps half a step
        that later records would follow."""
        self._check_open()
        positions, offset = [], self._end
        for i, frame in enumerate(self._staged):
            positions.append((self.count + i, offset))
            offset += len(frame)
        staged, self._staged = b"".join(self._staged), []
        try:
            if self._file.tell() != self._end:  # an earlier failed write left bytes
                self._cut_back()
            self._write_all(staged)
            if self._sync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):  # if it fails, it is retried before the next write
                self._cut_back()
            raise JournalError(f"cannot write journal {self.path!r}: {exc}; nothing of this "
                               "step was committed: free space (or fix the file) and step "
                               "again") from exc
        self._end += len(staged)
        self.count += len(positions)
        return positions

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            if not written:
                raise OSError(f"short write ({len(view)} bytes left)")
            view = view[written:]

    def _cut_back(self) -> None:
        self._file.truncate(self._end)
        self._file.seek(self._end)

    def append(self, record: TypedRecord | Mapping[str, JSON]) -> tuple[int, int]:
        """Stage and flush one record; returns its (record index, byte offset)."""
        self.stage(record)
        return self.flush()[0]

    def truncate(self, offset: int, count: int) -> None:
        """Cut the file to ``offset`` bytes, the boundary after its first ``count`` records,
        dropping what follows."""
        self._check_open()
        self._staged.clear()
        self.count = count
        self._file.truncate(max(offset, len(MAGIC)))
        self._file.seek(0, os.SEEK_END)
        self._end = self._file.tell()

    def close(self) -> None:
        """Flush and close. Idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._file.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RunClosed("journal")

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.size} bytes"
        return f"<JournalWriter {self.path!r} {state}>"

"""The run log: how ``workbench run`` learns which journals a notebook's runs wrote.

When the environment variable ``WORKBENCH_RUN_LOG`` names a file, every :class:`~workbench.Run`
(forks included) appends one JSON line ``{"journal": ABSOLUTE_PATH}`` to it when it creates
its journal (at its first send or step). ``workbench run`` sets the variable for the kernel it
starts and reads the file afterwards, so it finds exactly the journals the notebook's runs
created, wherever they live, and nothing else.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

RUN_LOG_ENV = "WORKBENCH_RUN_LOG"

MAX_RUN_LOG_LINES = 10_000
"""The most journals :func:`read_run_log` returns; later lines are left out."""

MAX_LINE_BYTES = 64 * 1024
"""A longer line is not a record this module wrote and is skipped."""


def note_journal(path: str | os.PathLike[str]) -> None:
    """Append ``path`` (made absolute) to the run log named by ``WORKBENCH_RUN_LOG``, if any.

    One ``write`` of one line to a file opened for appending, so lines of runs in several
    threads or processes do not interleave. A log that cannot be written gives a
    ``RuntimeWarning`` (the run goes on; ``workbench run`` will then miss this journal).
    """
    target = os.environ.get(RUN_LOG_ENV)
    if not target:
        return
    line = json.dumps({"journal": os.path.abspath(path)}, ensure_ascii=True) + "\n"
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("ascii"))
        finally:
            os.close(fd)
    except OSError as exc:
        warnings.warn(f"cannot record the journal {path} in the run log {target} "
                      f"(${RUN_LOG_ENV}): {exc}", RuntimeWarning, stacklevel=3)


def read_run_log(path: str | os.PathLike[str]) -> list[Path]:
    """The journals named in a run log, in the order first named, each once.

    A missing log means no run created a journal: an empty list. Lines that are not
    records of :func:`note_journal` (torn, too long, not JSON) are skipped. At most
    :data:`MAX_RUN_LOG_LINES` journals.
    """
    found: dict[str, None] = {}
    try:
        with open(path, "rb") as fh:
            for _ in range(4 * MAX_RUN_LOG_LINES):  # bounded, long lines read in pieces
                raw = fh.readline(MAX_LINE_BYTES)
                if not raw or len(found) >= MAX_RUN_LOG_LINES:
                    break
                journal = _parse(raw)
                if journal is not None:
                    found.setdefault(journal)
    except FileNotFoundError:
        return []
    return [Path(p) for p in found]


def _parse(raw: bytes) -> str | None:
    if not raw.endswith(b"\n"):
        return None  # a piece of a long line, or a torn last line
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    journal = record.get("journal") if isinstance(record, dict) else None
    return journal if isinstance(journal, str) and journal else None

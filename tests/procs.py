"""The processes below one: for tests that check what a run, a pool or a server leaves."""

from __future__ import annotations

import os
from pathlib import Path


def descendants(pid: int | None = None) -> set[int]:
    """The child processes of ``pid`` (default: this process) and theirs, zombies
    included (a pool's workers are children of its fork server)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # it exited meanwhile
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {os.getpid() if pid is None else pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return found

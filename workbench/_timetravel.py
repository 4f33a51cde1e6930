"""Time travel over records: the run state at the end of a step, read from its journal
(rewind cuts the journal there, fork starts a new one from it)."""

from __future__ import annotations

from collections.abc import Mapping

from workbench._journal import Journal
from workbench._records import Commit, EngineWarning, RunHeader, Snapshot, StepStart
from workbench._state import RunState, apply
from workbench._types import JSON
from workbench.errors import ConfigError

__all__ = ["state_at"]


def state_at(journal: Journal, step: int, *, next_step: int, initial: RunState,
             max_messages: Mapping[str, int], parent: Mapping[str, JSON] | None
             ) -> tuple[int, RunState]:
    """(byte offset just past ``step``'s commit, the state then), folding ``journal``'s
    records into ``initial``. ``step`` -1 is the run's start (a fork's snapshot). Raises
    ConfigError for a step not run yet (``next_step`` is the next to run) or before a
    fork's start."""
    if step < -1 or step >= next_step:
        raise ConfigError(f"step {step} is not in this run (steps 0..{next_step - 1}"
                          " have run; -1 means before the first)")
    start = parent or {"step": -1, "journal": None}
    fork_step = start["step"] if isinstance(start["step"], int) else -1
    if -1 < step < fork_step:
        raise ConfigError(f"step {step} is before this fork began (it continues from step "
                          f"{fork_step} of {start['journal']!r}); rewind or fork "
                          "the parent run for earlier steps")
    state = initial
    offset = journal.offsets[1] if len(journal.offsets) > 1 else journal.end
    for i, record in enumerate(journal.typed):
        if isinstance(record, RunHeader):
            continue
        if isinstance(record, Snapshot) or (isinstance(record, EngineWarning)
                                            and record.step == -1):
            apply(state, record, max_messages)  # the start: never cut
            offset = _next_offset(journal, i)
            continue
        if step == -1 or (isinstance(record, StepStart) and record.step > step):
            break
        apply(state, record, max_messages)
        if isinstance(record, Commit) and record.step == step:
            offset = _next_offset(journal, i)
            break
    return offset, state


def _next_offset(journal: Journal, i: int) -> int:
    return journal.offsets[i + 1] if i + 1 < len(journal.offsets) else journal.end

"""Golden journals: committed runs that must read, replay and be re-created byte for byte.

A change to the journal's bytes without a format version bump fails here. If the change is
meant: bump ``JOURNAL_VERSION`` (workbench/_records.py), run
``python tests/golden/make_golden.py`` and commit the new files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import workbench as wb
from workbench._records import JOURNAL_VERSION, AgentResult, RunHeader

GOLDEN = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN))

import make_golden  # noqa: E402  (the scenarios live beside the journals)


@pytest.fixture(scope="module")
def recreated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("golden")
    make_golden.make_all(folder)
    return folder


@pytest.mark.parametrize("name", make_golden.JOURNALS)
def test_a_golden_journal_is_recreated_byte_for_byte(name: str, recreated: Path) -> None:
    assert (recreated / name).read_bytes() == (GOLDEN / name).read_bytes(), (
        f"{name} changed: bump JOURNAL_VERSION and run python tests/golden/make_golden.py")


@pytest.mark.parametrize("name", make_golden.JOURNALS)
def test_a_golden_journal_reads_as_typed_records_and_replays(name: str) -> None:
    journal = wb.read_journal(GOLDEN / name)
    records = journal.typed
    assert isinstance(records[0], RunHeader) and records[0].version == JOURNAL_VERSION
    assert journal.torn_bytes == 0
    agents = {a.name for a in records[0].agents}
    python = {n: f for n, f in make_golden.PYTHON_AGENTS.items() if n in agents}
    if name == "fork.wbj":
        python["listener"] = make_golden.quieter
    report = wb.replay(GOLDEN / name, agents=python)
    assert report.steps > 2
    assert len(wb.events_from_journal(GOLDEN / name)) > 10


def test_the_golden_journals_cover_faults_forks_and_both_agent_kinds() -> None:
    records = {n: wb.read_journal(GOLDEN / n).typed for n in make_golden.JOURNALS}
    kinds = {a.identity["kind"] for rs in records.values() for a in rs[0].agents}  # type: ignore[union-attr]
    assert kinds == {"python", "wasm"}
    faults = {r.fault["kind"] for rs in records.values() for r in rs
              if isinstance(r, AgentResult) and r.fault}
    assert {"out_of_fuel", "fault"} <= faults
    assert records["fork.wbj"][0].parent is not None  # type: ignore[union-attr]


@pytest.mark.parametrize("name", make_golden.JOURNALS)
def test_each_records_fast_json_is_its_schemas_json(name: str) -> None:
    """The hot record kinds write their JSON directly; it must be the SCHEMA's, key for key."""
    journal = wb.read_journal(GOLDEN / name)
    for raw, record in zip(journal.records, journal.typed, strict=True):
        assert record.to_json() == record.schema_json() == raw

"""The `workbench` command: replay, inspect, doctor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import workbench as wb
from workbench.cli import main

AGENTS = Path(__file__).resolve().parent.parent / "examples" / "agents"


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "run" / "journal.wbj"
    with wb.Run(seed=4, policy="parallel", journal=path, workers=0) as run:
        run.add_agent("c1", AGENTS / "counter.wat", capabilities=["random", "now", "log"])
        run.add_agent("spin", AGENTS / "spin.wat", capabilities=[], fuel=50_000)
        run.connect("c1", "c1")
        run.run(3)
    return path


def test_replay_verifies_a_wasm_journal(journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(journal)]) == 0
    assert "ok: 3 steps" in capsys.readouterr().out


def test_inspect_prints_a_table(journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(journal)]) == 0
    out = capsys.readouterr().out
    assert "seed 4  policy parallel  steps 3" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert rows["c1"][:4] == ["c1", "wasm", "3", "3"]
    assert rows["spin"][-1] == "out_of_fuel@0"


def test_corrupt_journal_exits_1_with_the_offset(journal: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray(journal.read_bytes())
    data[40] ^= 0xFF
    journal.write_bytes(bytes(data))
    assert main(["inspect", str(journal)]) == 1
    assert "corrupt at byte" in capsys.readouterr().err
    assert main(["replay", str(journal)]) == 1


def test_doctor_and_help_run_as_a_command() -> None:
    out = subprocess.run([sys.executable, "-m", "workbench", "doctor"], capture_output=True,
                         text=True, check=True).stdout
    assert "onnxruntime" in out and "wat" in out
    helptext = subprocess.run([sys.executable, "-m", "workbench", "--help"],
                              capture_output=True, text=True, check=True).stdout
    for command in ("replay", "inspect", "doctor", "build-agent", "models"):
        assert command in helptext

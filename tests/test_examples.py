"""The main job's agents: prebuilt modules match their sources; the room runs and replays."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import workbench as wb
from workbench._wasm._build import build_agent
from workbench.testing import FakeEngine

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "examples" / "agents"


@pytest.mark.toolchain
@pytest.mark.parametrize("name", ["writer", "critic"])
def test_prebuilt_modules_are_built_from_their_sources(name: str, tmp_path: Path) -> None:
    built = build_agent(AGENTS / f"{name}.c", tmp_path / f"{name}.wasm")
    assert built.read_bytes() == (AGENTS / "prebuilt" / f"{name}.wasm").read_bytes(), (
        f"examples/agents/prebuilt/{name}.wasm is stale: rebuild it with "
        f"`workbench build-agent examples/agents/{name}.c -o examples/agents/prebuilt/{name}.wasm`")


def room(path: Path, workers: int | None) -> wb.Run:
    run = wb.Run(seed=3, policy="parallel", model=FakeEngine(), journal=path, workers=workers)
    for i in (1, 2):
        run.add_agent(f"writer-{i}", AGENTS / "prebuilt" / "writer.wasm",
                      capabilities=["infer", "log"],
                      state={"critic": f"critic-{i}", "rounds": 2, "round": 0,
                             "topic": f"topic {i}", "final": ""})
        run.add_agent(f"critic-{i}", AGENTS / "prebuilt" / "critic.wasm",
                      capabilities=["infer", "log"], state={"reviewed": 0})
    for i in (1, 2):
        run.connect(f"writer-{i}", f"critic-{i}", both=True)
    for i in (1, 2):
        run.send(f"writer-{i}", {"topic": f"topic {i}"})
    return run


def test_writers_room_in_the_pool_matches_in_process_and_replays(tmp_path: Path) -> None:
    with room(tmp_path / "pool" / "j.wbj", None) as run:
        summary = run.run()
        assert summary.reason == "quiescent"
        assert [run.status_of(f"writer-{i}") for i in (1, 2)] == ["done", "done"]
        assert run.state_of("critic-1") == {"reviewed": 2}
        assert run.state_of("writer-1")["final"]
    with room(tmp_path / "local" / "j.wbj", 0) as run:
        run.run()
    pooled = (tmp_path / "pool" / "j.wbj").read_bytes()
    assert pooled == (tmp_path / "local" / "j.wbj").read_bytes()
    assert wb.replay(tmp_path / "pool" / "j.wbj").steps == 5


@pytest.mark.model
def test_main_job_runs_on_the_default_model(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "conversation.py"), "--rounds", "1",
         "--journal", str(tmp_path / "j.wbj")],
        capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "writer-1 -> critic-1:" in out.stdout
    assert "replayed without the model: 3 steps identical" in out.stdout

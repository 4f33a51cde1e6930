"""The determinism contract, tested directly: same seed → same journal bytes under jitter."""

from __future__ import annotations

from pathlib import Path

import pytest

import workbench as wb
from tests.scenarios import build, make_agent, steps_for
from workbench._types import HostCalls
from workbench.testing import FakeEngine, inject_jitter


def run_scenario(scenario: int, seed: int, path: Path, jitter: int) -> bytes:
    with build(scenario, seed, path, jitter=jitter) as run:
        run.run(steps_for(scenario))
    return path.read_bytes()


@pytest.mark.parametrize("scenario", range(50))
def test_same_seed_same_journal_under_jitter(scenario: int, tmp_path: Path) -> None:
    first = run_scenario(scenario, 1000 + scenario, tmp_path / "a.wbj", jitter=scenario)
    second = run_scenario(scenario, 1000 + scenario, tmp_path / "b.wbj", jitter=scenario + 99)
    assert first == second
    other = run_scenario(scenario, 2000 + scenario, tmp_path / "c.wbj", jitter=scenario)
    assert other != first  # every agent draws host.random() each step


def test_journal_does_not_depend_on_completion_order(tmp_path: Path) -> None:
    journals = []
    for jitter in (1, 2, 3):
        path = tmp_path / f"j{jitter}.wbj"
        run = wb.Run(seed=5, policy="parallel", model=FakeEngine(), journal=path)
        inject_jitter(run, seed=jitter, max_delay=0.001)
        for i in range(8):
            run.add_agent(f"a{i}", make_agent(i, 2),
                          state={"n": 0, "sum": 0, "peers": [f"a{(i + 1) % 8}"]})
        for i in range(8):
            run.connect(f"a{i}", f"a{(i + 1) % 8}")
        run.run(30)
        run.close()
        journals.append(path.read_bytes())
    assert journals[0] == journals[1] == journals[2]


def test_barrier_batches_in_agent_order_whatever_the_timing(tmp_path: Path) -> None:
    def asker(state: int, inbox: list[object], host: HostCalls) -> object:
        host.infer({"prompt": "q", "max_tokens": 1})
        host.infer({"prompt": "r", "max_tokens": 1})
        return {"state": state, "outbox": [], "status": "done"}

    for jitter in range(5):
        engine = FakeEngine()
        run = wb.Run(seed=1, policy="parallel", model=engine, journal=tmp_path / f"{jitter}.wbj",
                     max_batch=3)
        inject_jitter(run, seed=jitter, max_delay=0.002)
        for i in range(7):
            run.add_agent(f"x{i}", asker, state=0)
        run.step()
        run.close()
        names = [f"x{i}" for i in range(7)]
        expected = [names[0:3], names[3:6], names[6:7]] * 2
        assert engine.batches == expected

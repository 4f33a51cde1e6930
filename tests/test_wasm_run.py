"""Misbehaving WebAssembly agents inside a real run, in the worker pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import workbench as wb

AGENTS = Path(__file__).resolve().parent.parent / "examples" / "agents"


def team(path: Path, extra: dict[str, tuple[str, Any]], workers: int | None = None) -> wb.Run:
    run = wb.Run(seed=9, policy="parallel", journal=path, workers=workers)
    for i in range(3):
        run.add_agent(f"count{i}", AGENTS / "counter.wat", capabilities=["random", "now", "log"])
    for name, (module, state) in extra.items():
        run.add_agent(name, AGENTS / module, state=state, capabilities=[], fuel=200_000,
                      memory="1MiB")
    for i in range(3):
        run.connect(f"count{i}", f"count{i}")
    return run


def siblings(path: Path) -> list[dict[str, Any]]:
    return [r for r in wb.read_journal(path) if r["k"] in ("agent", "call")
            and r["a"].startswith("count")]


@pytest.mark.parametrize(("module", "state", "kind"), [
    ("spin.wat", None, "out_of_fuel"),
    ("memory_bomb.wat", None, "memory_limit"),
    ("traps.wat", "unreachable", "trap"),
])
def test_a_faulting_agent_leaves_its_siblings_records_unchanged(
        tmp_path: Path, module: str, state: Any, kind: str) -> None:
    with team(tmp_path / "control.wbj", {}) as run:
        run.run(4)
    with team(tmp_path / "faulty.wbj", {"bad": (module, state)}) as run:
        run.run(4)
        assert run.status_of("bad") == "faulted"
    faults = [r["fault"] for r in wb.read_journal(tmp_path / "faulty.wbj")
              if r["k"] == "agent" and r["a"] == "bad"]
    assert [f["kind"] for f in faults] == [kind]
    assert siblings(tmp_path / "faulty.wbj") == siblings(tmp_path / "control.wbj")
    wb.replay(tmp_path / "faulty.wbj")


def test_out_of_fuel_is_the_same_in_every_rerun(tmp_path: Path) -> None:
    seen = set()
    for i in range(5):
        with team(tmp_path / f"{i}.wbj", {"bad": ("spin.wat", None)}) as run:
            report = run.step()
            assert report is not None
            fault = report.faults["bad"]
            seen.add((fault.kind, repr(sorted(fault.data.items()))))
    assert len(seen) == 1


def test_fail_policy_raises_the_typed_error(tmp_path: Path) -> None:
    with wb.Run(seed=1, journal=tmp_path / "j.wbj") as run:
        run.add_agent("bad", AGENTS / "spin.wat", capabilities=[], fuel=100_000,
                      on_fault="fail")
        with pytest.raises(wb.OutOfFuel) as info:
            run.step()
        assert (info.value.agent, info.value.step) == ("bad", 0)


def test_ungranted_capability_is_refused_at_add_agent(tmp_path: Path) -> None:
    with wb.Run(seed=1, journal=tmp_path / "j.wbj") as run, \
            pytest.raises(wb.CapabilityError, match="infer"):
        run.add_agent("x", AGENTS / "needs_infer.wat", capabilities=["log"])

"""A run on the real engine (tiny generated model): barrier batches, provider fallback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import tiny_model
from test_engine_providers import CUDA, Opener

import workbench as wb
from workbench._engine._engine import Engine
from workbench._engine._model import ModelFiles

__all__ = ["tiny_model"]


def asker(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    reply = host.infer({"prompt": f"question {state['i']}", "max_tokens": 6})
    return {"state": {"i": state["i"], "reply": reply["tokens"],
                      "provider": reply["provider"]}, "outbox": [], "status": "done"}


def team(path: Path, model: ModelFiles, **engine_options: Any) -> wb.Run:
    run = wb.Run(seed=2, policy="parallel", model=model, journal=path, max_batch=3,
                 engine_options={"threads": 1, **engine_options})
    for i in range(5):
        run.add_agent(f"a{i}", asker, state={"i": i})
    return run


@pytest.mark.invariance
def test_run_on_the_engine_is_deterministic_and_replays(tmp_path: Path,
                                                        tiny_model: ModelFiles) -> None:
    with team(tmp_path / "1.wbj", tiny_model) as run:
        run.run()
        header = run.journal.read().records[0]
        assert header["engine"]["provider"] == "CPUExecutionProvider"
        assert header["engine"]["model_hash"] == tiny_model.model_hash
    with team(tmp_path / "2.wbj", tiny_model, max_batch=1) as run:
        run.run()  # the engine's own batch size must not change any tokens
    first = [r for r in wb.read_journal(tmp_path / "1.wbj") if r["k"] == "call"]
    second = [r for r in wb.read_journal(tmp_path / "2.wbj") if r["k"] == "call"]
    assert first == second and len(first) == 5
    assert all(len(c["res"]["tokens"]) == 6 for c in first)
    wb.replay(tmp_path / "1.wbj", agents={f"a{i}": asker for i in range(5)})


def test_forced_provider_failure_falls_back_to_cpu_and_is_journaled(
        tmp_path: Path, tiny_model: ModelFiles) -> None:
    opener = Opener("flaky", fail_at=4)
    with team(tmp_path / "j.wbj", tiny_model, providers=[CUDA], opener=opener) as run:
        events: list[wb.Event] = []
        sub = run.subscribe(events.append, kinds=("warning",))
        run.run()
        sub.flush()
        records = run.journal.read().records
    assert records[0]["engine"]["provider"] == CUDA  # it loaded "on CUDA"
    warns = [r for r in records if r["k"] == "warn" and r["what"] == "provider_fallback"]
    assert [(w["failed"], w["next"], w["when"], w["t"]) for w in warns] == [
        (CUDA, "CPUExecutionProvider", "run", 0)]
    assert any(r["k"] == "warn" and r["what"] == "stream_restart" for r in records)
    providers = {r["a"]: r["res"]["provider"] for r in records if r["k"] == "call"}
    assert set(providers.values()) <= {CUDA, "CPUExecutionProvider"}
    assert "CPUExecutionProvider" in providers.values()
    assert any(e.data["warning"]["what"] == "provider_fallback" for e in events)
    wb.replay(tmp_path / "j.wbj", agents={f"a{i}": asker for i in range(5)})


def test_strict_provider_failure_stops_the_step_without_committing_it(
        tmp_path: Path, tiny_model: ModelFiles) -> None:
    opener = Opener("flaky", fail_at=2)
    with team(tmp_path / "j.wbj", tiny_model, providers=[CUDA], opener=opener,
              strict_provider=True) as run:
        with pytest.raises(wb.ProviderError):
            run.step()
        assert run.step_index == 0
        kinds = [r["k"] for r in run.journal.read().records]
    assert kinds == ["run"]


QUESTIONS = ("What is a tide?", "Name three colours.", "Why is the sky blue?",
             "Write a haiku about rain.", "What is 12 times 7?", "Who wrote Hamlet?",
             "Give me a word that rhymes with cat.", "What do bees make?")


def questioner(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    reply = host.infer({"messages": [{"role": "user", "content": state["q"]}],
                        "max_tokens": 12, "temperature": state["temperature"]})
    return {"state": {**state, "tokens": reply["tokens"]}, "outbox": [], "status": "done"}


@pytest.fixture(scope="module")
def default_engine() -> Iterator[Engine]:
    """One load of the default model for the runs below (loading dominates under emulation)."""
    with Engine(threads=2) as engine:
        yield engine


def answers_of(path: Path, engine: Engine, max_batch: int, temperature: float
               ) -> list[list[int]]:
    with wb.Run(seed=5, policy="parallel", model=engine, journal=path,
                max_batch=max_batch) as run:
        for i, question in enumerate(QUESTIONS):
            run.add_agent(f"q{i}", questioner, state={"q": question, "temperature": temperature})
        run.run()
        return [run.state_of(f"q{i}")["tokens"] for i in range(len(QUESTIONS))]


@pytest.mark.model
@pytest.mark.invariance
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_the_batch_size_changes_no_token_of_the_real_model(
        tmp_path: Path, default_engine: Engine, temperature: float) -> None:
    """Eight agents ask at once; one sequence per batch, three, or all eight give the same
    tokens, greedy and sampled (through the public API, on the default model)."""
    one, three, eight = (answers_of(tmp_path / f"{b}.wbj", default_engine, b, temperature)
                         for b in (1, 3, 8))
    assert sum(len(tokens) for tokens in one) >= 8 * 10  # real answers, not empty ones
    assert one == three == eight


def test_a_run_used_only_to_generate_leaves_no_run_folder(tmp_path: Path,
                                                          tiny_model: ModelFiles) -> None:
    """The default journal folder is made when the run first needs its journal."""
    with wb.Run(seed=7, model=tiny_model, engine_options={"threads": 1}) as run:
        assert "not created yet" in repr(run)
        assert run.engine.generate("hello", max_tokens=3).tokens
    assert not (tmp_path / "runs").exists()
    with wb.Run(seed=7) as run:
        run.add_agent("a", asker, state={"i": 0})
        run.step()
        assert Path(run.journal.path).parent.parent == Path("runs")
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_the_journal_header_records_the_cpu_and_inspect_shows_it(
        tmp_path: Path, tiny_model: ModelFiles, capsys: pytest.CaptureFixture[str]) -> None:
    from workbench._engine._cpu import cpu_info
    from workbench.cli import main

    with team(tmp_path / "j.wbj", tiny_model) as run:
        run.step()
    header = wb.read_journal(tmp_path / "j.wbj").records[0]
    assert header["engine"]["cpu"] == cpu_info()
    assert header["engine"]["min_decode_rows"] in (1, 2)  # this CPU's checked floor
    assert main(["inspect", str(tmp_path / "j.wbj")]) == 0
    assert f"kernel path {cpu_info()['isa']}" in capsys.readouterr().out

"""Test in-process, deploy sandboxed: the same seeded scenario gives the same journal whether
its Python agents run in the kernel or as WebAssembly (sandbox=True).

The journals differ only where they must: each agent's identity in the header (its kind and
code hash), and the ``traceback`` a sandboxed agent's exception fault carries besides the
``where`` both give. (The messages of Python's own exceptions may differ between the kernel's
Python and the sandbox's CPython 3.14, so the raising agent here words its own.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import workbench as wb
from tests.pysandbox_helpers import cell, python_runtime
from tests.scenarios import build
from workbench.testing import FakeEngine

__all__ = ["python_runtime"]

MAX_STEPS = 25


def normalised(path: Path, *, sandboxed: bool) -> list[dict[str, Any]]:
    """The journal's records without agent identities and sandbox tracebacks."""
    out = []
    for record in wb.read_journal(path):
        if record["k"] == "run":
            for agent in record["agents"]:
                kind = agent.pop("id")["kind"]
                assert kind == ("python_sandbox" if sandboxed else "python")
        fault = record.get("fault")
        if isinstance(fault, dict) and fault["kind"] == "fault" and sandboxed:
            assert fault["data"].pop("traceback").startswith("Traceback")
        out.append(record)
    return out


@pytest.mark.parametrize("scenario", range(20))
def test_sandboxed_and_in_process_journals_are_identical(scenario: int,
                                                         tmp_path: Path) -> None:
    journals = []
    for sandbox in (False, True):
        path = tmp_path / f"{sandbox}.wbj"
        with build(scenario, 500 + scenario, path, sandbox=sandbox) as run:
            run.run(MAX_STEPS)
        journals.append(normalised(path, sandboxed=sandbox))
    assert journals[0] == journals[1]
    assert any(r["k"] == "call" for r in journals[0])


FAULTS = '''\
def positive(x):
    if x <= 0:
        raise ValueError(f"{x} is not positive")
    return x


def divide(state, inbox, host):
    host.log("about to divide")
    return {"state": 1 // positive(state)}


def no_state(state, inbox, host):
    return {"outbox": []}


def bad_status(state, inbox, host):
    return {"state": state, "status": "sleeping"}


def extra_key(state, inbox, host):
    return {"state": state, "mood": "odd"}


def tuple_form(state, inbox, host):
    return state + 1, [("tuple_form", {"n": state})], "ready"


def refused(state, inbox, host):
    try:
        host.infer({"prompt": 5})
    except ValueError as exc:
        return {"state": str(exc)}
    return {"state": "accepted"}
'''


def test_faults_and_result_forms_are_journaled_alike(tmp_path: Path) -> None:
    journals = []
    for sandbox in (False, True):
        ns = cell(FAULTS)
        path = tmp_path / f"{sandbox}.wbj"
        with wb.Run(seed=4, policy="parallel", model=FakeEngine(), journal=path,
                    workers=0) as run:
            for name in ("divide", "no_state", "bad_status", "extra_key", "tuple_form",
                         "refused"):
                run.add_agent(name, ns[name], sandbox=sandbox, state=0)
            run.connect("tuple_form", "tuple_form")
            run.run(3)
        journals.append(normalised(path, sandboxed=sandbox))
    assert journals[0] == journals[1]
    kinds = {r["a"]: r["fault"]["kind"] for r in journals[0]
             if r["k"] == "agent" and r["fault"]}
    assert kinds == {"divide": "fault", "no_state": "malformed_output",
                     "bad_status": "malformed_output", "extra_key": "malformed_output"}

"""The main job: a writers' room on the default model, run as sandboxed WebAssembly.

Two writers draft short texts on their topics; each sends its draft to its own critic, who
answers with a critique; the writer revises. Writers and critics are C programs compiled to
WebAssembly (examples/agents/writer.c, critic.c) running in the worker pool; every step's
model requests are batched together across agents. The run's journal is printed at the end
and replayed, without the model, to show it is deterministic.

    python examples/conversation.py [--seed 7] [--rounds 2] [--model smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import workbench as wb

HERE = Path(__file__).resolve().parent
TOPICS = ("why the sea is salty", "how bees make honey")


def agent_module(name: str) -> Path:
    """Build examples/agents/NAME.c when clang is here; else use the prebuilt module."""
    if shutil.which("clang"):
        from workbench._wasm._build import build_agent

        try:
            return build_agent(HERE / "agents" / f"{name}.c",
                               HERE / "agents" / f"{name}.wasm")
        except wb.WorkbenchError as exc:
            print(f"(using the prebuilt {name}.wasm: {exc})", file=sys.stderr)
    return HERE / "agents" / "prebuilt" / f"{name}.wasm"


def transcript(records: list[dict[str, Any]]) -> list[str]:
    """Readable lines for a step's committed records."""
    lines = []
    for r in records:
        if r["k"] == "agent":
            for m in r["out"]:
                p = m["payload"]
                text = p.get("critique") or p.get("draft") or p.get("error") or p
                lines.append(f"[step {r['t']}] {r['a']} -> {m['to']}: {text}")
            if r["fault"]:
                lines.append(f"[step {r['t']}] {r['a']} FAULT {r['fault']['kind']}: "
                             f"{r['fault']['detail']}")
        elif r["k"] == "call" and r["fn"] == "log":
            lines.append(f"[step {r['t']}] {r['a']} (final): {r['req']}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--journal", default=None)
    parser.add_argument("--view-doc", default=None, metavar="FILE",
                        help="also write the run's view document (docs/views.md) to FILE")
    args = parser.parse_args()

    writer, critic = agent_module("writer"), agent_module("critic")
    run = wb.Run(seed=args.seed, policy="parallel", model=args.model, journal=args.journal)
    for i, topic in enumerate(TOPICS, 1):
        run.add_agent(f"writer-{i}", writer, capabilities=["infer", "log"],
                      state={"critic": f"critic-{i}", "rounds": args.rounds, "round": 0,
                             "topic": topic, "final": ""})
        run.add_agent(f"critic-{i}", critic, capabilities=["infer", "log"],
                      state={"reviewed": 0})
    for i in range(1, len(TOPICS) + 1):
        run.connect(f"writer-{i}", f"critic-{i}", both=True)
    for i, topic in enumerate(TOPICS, 1):
        run.send(f"writer-{i}", {"topic": topic})

    engine = run.engine.describe()
    print(f"model {engine.get('model')} on {engine.get('provider')}; "
          f"journal {run.journal.path}\n")
    view = run.view() if args.view_doc else None
    started = time.perf_counter()
    seen = 0
    with run:
        while run.step() is not None:
            records = run.journal.read().records
            for line in transcript(records[seen:]):
                print(textwrap.fill(line, width=100, subsequent_indent="    "))
            seen = len(records)
        steps = run.step_index
    elapsed = time.perf_counter() - started
    if view is not None:
        Path(args.view_doc).write_text(json.dumps(view.snapshot(), indent=1))
        print(f"view document: {args.view_doc}")
    print(f"\n{steps} steps in {elapsed:.1f} s; journal: {run.journal.path}")
    report = wb.replay(run.journal.path)
    print(f"replayed without the model: {report.steps} steps identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())

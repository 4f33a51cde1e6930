"""A code-review pipeline over a real source file: a splitter (Python) cuts the file into its
top-level functions, one reviewer per function (the C critic, compiled to WebAssembly and run
sandboxed) critiques it on the default model, all in one batch, and an editor (Python)
collects the critiques into a review.

    python examples/code_review.py [--file workbench/_runlog.py] [--functions 3] [--model NAME]
    workbench run examples/code_review.py -p functions=2
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

import workbench as wb

HERE = Path(__file__).resolve().parent
CRITIC = HERE / "agents" / "prebuilt" / "critic.wasm"
MAX_SOURCE_CHARS = 600


def functions_of(path: Path, limit: int) -> list[tuple[str, str]]:
    """(name, source) of the file's first ``limit`` top-level functions, each cut short."""
    text = path.read_text(encoding="utf-8")
    found = []
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            source = ast.get_source_segment(text, node) or ""
            found.append((node.name, source[:MAX_SOURCE_CHARS]))
    return found[:limit]


def splitter(parts: list[tuple[str, str]]) -> Any:
    def step(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
        outbox = [(f"review-{name}", {"draft": source}) for name, source in parts]
        return {"state": {"sent": len(outbox)}, "outbox": outbox, "status": "done"}
    return step


def editor(state: dict[str, Any], inbox: list[dict[str, Any]], host: Any) -> dict[str, Any]:
    notes = state["notes"] + [m["payload"].get("critique", "") for m in inbox]
    return {"state": {"notes": notes}, "outbox": [], "status": "idle"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=str(Path(wb.__file__).parent / "_runlog.py"),
                        help="a Python file (default: the workbench's own run log module)")
    parser.add_argument("--functions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--journal", default="runs/code_review.wbj")
    args = parser.parse_args()

    parts = functions_of(Path(args.file), args.functions)
    reviewers = [f"review-{name}" for name, _ in parts]
    dag = wb.DAG({"split": reviewers, **{r: ["editor"] for r in reviewers}})
    run = wb.Run(seed=args.seed, policy=dag, model=args.model, journal=args.journal,
                 overwrite=True)
    run.add_agent("split", splitter(parts), state={"sent": 0})
    for name in reviewers:
        run.add_agent(name, CRITIC, capabilities=["infer", "log"], fuel=50_000_000,
                      memory="16MiB", state={"reviewed": 0, "forward_to": "editor"})
    run.add_agent("editor", editor, state={"notes": []})
    with run:
        summary = run.run()
        notes = run.state_of("editor")["notes"]
    print(f"review of {Path(args.file).name}:")
    for (name, _), note in zip(parts, notes, strict=False):
        print(f"- {name}: {note.strip()}")
    print(f"{summary.steps} steps; journal {run.journal.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A research team summarising a document: one researcher (Python) per section summarises it
in parallel on the default model (one batch), and an editor (Python) turns the notes into a
short brief.

    python examples/research_team.py [--document FILE.md] [--sections 3] [--model NAME]
    workbench run examples/research_team.py -p sections=2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import workbench as wb

HERE = Path(__file__).resolve().parent
MAX_SECTION_CHARS = 800
MAX_TOKENS = 24


def sections_of(path: Path, limit: int) -> list[tuple[str, str]]:
    """(heading, text) of the document's first ``limit`` "## " sections, each cut short."""
    found: list[tuple[str, str]] = []
    for chunk in path.read_text(encoding="utf-8").split("\n## ")[1:]:
        heading, _, body = chunk.partition("\n")
        found.append((heading.strip(), body.strip()[:MAX_SECTION_CHARS]))
    return found[:limit]


def researcher(state: dict[str, Any], inbox: Any, host: Any) -> dict[str, Any]:
    ask = f"Summarise in one sentence:\n{state['text']}"
    reply = host.infer({"messages": [{"role": "user", "content": ask}],
                        "max_tokens": MAX_TOKENS})
    note = {"heading": state["heading"], "note": reply["text"].strip()}
    return {"state": {**state, "note": note["note"]}, "outbox": [("editor", note)],
            "status": "done"}


def editor(state: dict[str, Any], inbox: list[dict[str, Any]], host: Any) -> dict[str, Any]:
    notes = "\n".join(f"{m['payload']['heading']}: {m['payload']['note']}" for m in inbox)
    reply = host.infer({"messages": [{"role": "user", "content":
                                      f"Write a two-sentence brief from these notes:\n{notes}"}],
                        "max_tokens": MAX_TOKENS * 2})
    return {"state": {"brief": reply["text"].strip()}, "outbox": [], "status": "done"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--document", default=str(HERE / "agents" / "README.md"),
                        help="a Markdown file with '## ' sections (default: the agents guide)")
    parser.add_argument("--sections", type=int, default=3)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--journal", default="runs/research_team.wbj")
    args = parser.parse_args()

    sections = sections_of(Path(args.document), args.sections)
    names = [f"researcher-{i}" for i in range(1, len(sections) + 1)]
    run = wb.Run(seed=args.seed, policy=wb.DAG({**{n: ["editor"] for n in names}}),
                 model=args.model, journal=args.journal, overwrite=True)
    for name, (heading, text) in zip(names, sections, strict=True):
        run.add_agent(name, researcher, state={"heading": heading, "text": text, "note": ""})
    run.add_agent("editor", editor, state={"brief": ""})
    with run:
        summary = run.run()
        for name in names:
            state = run.state_of(name)
            print(f"{state['heading']}: {state['note']}")
        print(f"\nbrief: {run.state_of('editor')['brief']}")
    print(f"{summary.steps} steps; journal {run.journal.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

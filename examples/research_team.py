"""A research team summarising a document: an editor (Python) hands each section to its own
researcher (the AssemblyScript summarizer, compiled to WebAssembly and run sandboxed), the
researchers summarise in parallel on the default model (one batch), and the editor turns
their notes into a short brief.

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
SUMMARIZER = HERE / "agents" / "prebuilt" / "summarizer.wasm"  # from agents/summarizer.ts
MAX_SECTION_CHARS = 800
MAX_TOKENS = 48


def sections_of(path: Path, limit: int) -> list[tuple[str, str]]:
    """(heading, text) of the document's first ``limit`` "## " sections, each cut short."""
    found: list[tuple[str, str]] = []
    for chunk in path.read_text(encoding="utf-8").split("\n## ")[1:]:
        heading, _, body = chunk.partition("\n")
        found.append((heading.strip(), body.strip()[:MAX_SECTION_CHARS]))
    return found[:limit]


def editor(sections: dict[str, tuple[str, str]]) -> Any:
    """Sends each researcher its section, waits for every summary, then writes the brief."""
    def step(state: dict[str, Any], inbox: list[dict[str, Any]], host: Any) -> dict[str, Any]:
        if not state["sent"]:
            outbox = [(name, {"text": text}) for name, (_, text) in sections.items()]
            return {"state": {**state, "sent": True}, "outbox": outbox, "status": "idle"}
        notes = {**state["notes"], **{m["from"]: m["payload"].get("summary", "")
                                      for m in inbox}}
        if len(notes) < len(sections):
            return {"state": {**state, "notes": notes}, "outbox": [], "status": "idle"}
        listed = "\n".join(f"{sections[n][0]}: {notes[n]}" for n in sorted(notes))
        reply = host.infer({"messages": [{"role": "user", "content":
                                          f"Write a two-sentence brief from these notes:\n"
                                          f"{listed}"}], "max_tokens": MAX_TOKENS})
        return {"state": {**state, "notes": notes, "brief": reply["text"].strip()},
                "outbox": [], "status": "done"}
    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--document", default=str(HERE / "agents" / "README.md"),
                        help="a Markdown file with '## ' sections (default: the agents guide)")
    parser.add_argument("--sections", type=int, default=3)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--journal", default="runs/research_team.wbj")
    args = parser.parse_args()

    sections = {f"researcher-{i}": section for i, section in
                enumerate(sections_of(Path(args.document), args.sections), 1)}
    run = wb.Run(seed=args.seed, policy="parallel", model=args.model, journal=args.journal,
                 overwrite=True)
    run.add_agent("editor", editor(sections), state={"sent": False, "notes": {}, "brief": ""})
    for name in sections:
        run.add_agent(name, SUMMARIZER, capabilities=["infer", "log", "random", "now"],
                      fuel=50_000_000, memory="16MiB", state={"summarized": 0})
        run.connect("editor", name, both=True)
    with run:
        summary = run.run()
        notes = run.state_of("editor")["notes"]
        for name, (heading, _) in sections.items():
            print(f"{heading}: {notes.get(name, '').strip()}")
        print(f"\nbrief: {run.state_of('editor')['brief']}")
    print(f"{summary.steps} steps; journal {run.journal.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

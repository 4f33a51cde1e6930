"""A debate: two Python agents argue a motion in turns on the default model; a moderator
reads the exchange and names the stronger side.

    python examples/debate.py [--motion "..."] [--turns 2] [--seed 1] [--model NAME]
    workbench run examples/debate.py -p turns=3      # headless, with a report
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import workbench as wb

MAX_TOKENS = 24


def debater(side: str, opponent: str, turns: int) -> Any:
    def step(state: dict[str, Any], inbox: list[dict[str, Any]], host: Any) -> dict[str, Any]:
        heard = inbox[-1]["payload"]["said"] if inbox else ""
        ask = (f"Motion: {state['motion']}. You argue {side}. "
               + (f"Your opponent said: {heard} Answer in one sentence." if heard
                  else "Open in one sentence."))
        reply = host.infer({"messages": [{"role": "user", "content": ask}],
                            "max_tokens": MAX_TOKENS})
        said = reply["text"].strip()
        spoken = state["spoken"] + 1
        last = spoken >= turns
        outbox = [(opponent, {"said": said})] if not last or side == "for" else []
        if last:
            outbox.append(("moderator", {"side": side, "said": said}))
        return {"state": {**state, "spoken": spoken}, "outbox": outbox,
                "status": "done" if last else "idle"}
    return step


def moderator(state: dict[str, Any], inbox: list[dict[str, Any]], host: Any) -> dict[str, Any]:
    closing = state["closing"] + [m["payload"] for m in inbox]
    if len(closing) < 2:
        return {"state": {**state, "closing": closing}, "outbox": [], "status": "idle"}
    ask = "Which closing argument is stronger, and why, in one sentence?\n" + "\n".join(
        f"{c['side']}: {c['said']}" for c in closing)
    reply = host.infer({"messages": [{"role": "user", "content": ask}],
                        "max_tokens": MAX_TOKENS})
    return {"state": {"closing": closing, "verdict": reply["text"].strip()}, "outbox": [],
            "status": "done"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--motion", default="Cities should plant more trees")
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--journal", default="runs/debate.wbj")
    args = parser.parse_args()

    run = wb.Run(seed=args.seed, policy="round_robin", model=args.model,
                 journal=args.journal, overwrite=True)
    for side, opponent in (("for", "against"), ("against", "for")):
        run.add_agent(side, debater(side, opponent, args.turns),
                      state={"motion": args.motion, "spoken": 0})
    run.add_agent("moderator", moderator, state={"closing": [], "verdict": ""})
    run.connect("for", "against", both=True)
    run.connect("for", "moderator")
    run.connect("against", "moderator")
    run.send("for", {"said": ""})
    with run:
        summary = run.run()
        for event in wb.events_from_journal(run.journal.path):
            if event.kind == "message" and event.data["to"] != "moderator":
                print(f"[step {event.step}] {event.agent}: {event.data['payload']['said']}")
        print(f"\nmoderator: {run.state_of('moderator')['verdict']}")
    print(f"{summary.steps} steps; journal {run.journal.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

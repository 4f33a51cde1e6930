"""Render a view document (docs/views.md) to PNG screenshots of each pane.

    python scripts/view_screenshots.py DOC.json [-o docs/images] [--theme light|dark|both]
                                                [--agent NAME] [--prefix views-]

Writes PREFIX{THEME}-{pane}.png for pane in full, controls, graph, inspector, timeline. The
views render offline (renderDocument, no kernel) in headless Chromium; the inspector shows
`--agent` (default: the first faulted agent, else the first agent). Needs Playwright and
Debian's `chromium` package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from views_harness import views_page

PANES = ("controls", "graph", "inspector", "timeline")


def pick_agent(doc: dict[str, Any]) -> str | None:
    """The first agent that faulted in a kept step, else the first agent."""
    for step in doc.get("steps", []):
        for name, result in step.get("results", {}).items():
            if result.get("status") == "faulted":
                return str(name)
    agents = doc.get("header", {}).get("agents", [])
    return str(agents[0]["name"]) if agents else None


def select_agent(page: Any, agent: str) -> bool:
    """Clicks the agent's node (SVG graph) or its box (canvas graph); False if not found."""
    node = page.locator(f'.wb-node[data-agent="{json.dumps(agent)[1:-1]}"]')
    if node.count() > 0:
        node.first.click()
        return True
    return False


def shoot(doc: dict[str, Any], out: Path, themes: list[str], agent: str | None,
          prefix: str) -> list[Path]:
    written: list[Path] = []
    with views_page() as page:
        for theme in themes:
            page.evaluate("(name) => harness.theme(name)", theme)
            page.evaluate("(doc) => harness.offline(doc)", doc)
            page.evaluate("() => harness.frame()")
            if agent is not None:
                select_agent(page, agent)
            page.evaluate("() => harness.frame()")
            page.wait_for_timeout(150)  # the pulse and hover states settle
            root = page.locator(".wb-views")
            path = out / f"{prefix}{theme}-full.png"
            root.screenshot(path=str(path))
            written.append(path)
            for pane in PANES:
                path = out / f"{prefix}{theme}-{pane}.png"
                page.locator(f'[data-pane="{pane}"]').screenshot(path=str(path))
                written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("doc", type=Path, help="a view document (JSON)")
    parser.add_argument("-o", "--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--theme", choices=("light", "dark", "both"), default="both")
    parser.add_argument("--agent", help="the agent shown in the inspector")
    parser.add_argument("--prefix", default="views-")
    args = parser.parse_args(argv)
    doc = json.loads(args.doc.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    themes = ["light", "dark"] if args.theme == "both" else [args.theme]
    for path in shoot(doc, args.out, themes, args.agent or pick_agent(doc), args.prefix):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

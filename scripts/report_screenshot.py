"""A screenshot of an offline report in headless Chromium (Debian's), network blocked.

    python scripts/report_screenshot.py REPORT.html OUT.png [--width 1280] [--height 1000]

Used for docs/images/quickstart-report.png:

    workbench run notebooks/01_quickstart.ipynb -o runs/quickstart
    python scripts/report_screenshot.py runs/quickstart/report.html \\
        docs/images/quickstart-report.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from views_harness import CHROMIUM_FLAGS, chromium_binary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=str(chromium_binary()), headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": args.width, "height": args.height})
        page = context.new_page()
        page.goto(args.report.resolve().as_uri())
        page.wait_for_selector("body[data-wb-rendered] .wb-node[data-agent]", timeout=15_000)
        page.wait_for_timeout(300)  # the timeline draws on the next animation frame
        page.locator(".wb-views").first.screenshot(path=str(args.out))
        context.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

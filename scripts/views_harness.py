"""A page that loads the views bundle in headless Chromium, with a fake widget model.

Used by the render tests (tests/test_views_render.py), the screenshot script
(scripts/view_screenshots.py) and the front-end benchmark (benchmarks/views.py).

The page is served from memory under http://views.test/ by request interception, and every
other host is unresolvable (`--host-resolver-rules`), so nothing leaves the machine. The page
exposes `window.harness` (see PAGE below): `mount(doc)` renders the anywidget module with a
`FakeModel` (`model.sent` holds what the views sent, `model.custom(msg)` delivers a kernel
message, `model.setDoc(doc)` rewrites the traitlet), `offline(doc)` uses renderDocument, and
`theme(name)` switches between JupyterLab's light and dark variables or none.

Needs Playwright (the `test` extra) and Debian's `chromium` package.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "workbench" / "static" / "views.js"
ORIGIN = "http://views.test"
CHROMIUM_WRAPPER = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

# JupyterLab 4's theme variables the views read (a subset of each theme's values).
THEMES = {
    "light": {
        "--jp-layout-color0": "#ffffff", "--jp-layout-color1": "#ffffff",
        "--jp-layout-color2": "#eeeeee", "--jp-ui-font-color0": "rgba(0, 0, 0, 1)",
        "--jp-ui-font-color1": "rgba(0, 0, 0, 0.87)", "--jp-ui-font-color2": "rgba(0, 0, 0, 0.54)",
        "--jp-border-color1": "#bdbdbd", "--jp-brand-color1": "#1976d2",
        "--jp-error-color1": "#d32f2f", "--jp-warn-color1": "#f57c00",
        "--jp-success-color1": "#388e3c",
        "--jp-ui-font-family": "system-ui, -apple-system, 'Segoe UI', helvetica, arial, sans-serif",
        "--jp-code-font-family": "menlo, consolas, 'DejaVu Sans Mono', monospace",
    },
    "dark": {
        "--jp-layout-color0": "#111111", "--jp-layout-color1": "#212121",
        "--jp-layout-color2": "#424242", "--jp-ui-font-color0": "rgba(255, 255, 255, 1)",
        "--jp-ui-font-color1": "rgba(255, 255, 255, 0.87)",
        "--jp-ui-font-color2": "rgba(255, 255, 255, 0.54)",
        "--jp-border-color1": "#616161", "--jp-brand-color1": "#1976d2",
        "--jp-error-color1": "#d32f2f", "--jp-warn-color1": "#f57c00",
        "--jp-success-color1": "#388e3c",
        "--jp-ui-font-family": "system-ui, -apple-system, 'Segoe UI', helvetica, arial, sans-serif",
        "--jp-code-font-family": "menlo, consolas, 'DejaVu Sans Mono', monospace",
    },
}

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>views</title>
<style>
  body { margin: 0; padding: 16px; background: var(--jp-layout-color0, #fff); }
  #host { width: 1180px; }
</style></head>
<body><div id="host"></div>
<script type="module">
import views, { renderDocument } from "./views.js";
class FakeModel {
  constructor(doc) { this.doc = doc; this.handlers = new Map(); this.sent = []; }
  get(name) { return name === "doc" ? this.doc : undefined; }
  on(event, callback) {
    if (!this.handlers.has(event)) this.handlers.set(event, []);
    this.handlers.get(event).push(callback);
  }
  off(event, callback) {
    this.handlers.set(event, (this.handlers.get(event) || []).filter((c) => c !== callback));
  }
  send(message) { this.sent.push(JSON.parse(JSON.stringify(message))); }
  emit(event, ...args) { for (const callback of this.handlers.get(event) || []) callback(...args); }
  custom(message) { this.emit("msg:custom", message, []); }
  setDoc(doc) { this.doc = doc; this.emit("change:doc"); }
}
const host = document.getElementById("host");
let cleanup = null;
window.harness = {
  THEMES: __THEMES__,
  mount(doc) {
    this.unmount();
    this.model = new FakeModel(doc);
    cleanup = views.render({ model: this.model, el: host });
    return true;
  },
  offline(doc) {
    this.unmount();
    const handle = renderDocument(host, doc);
    cleanup = () => handle.destroy();
    return true;
  },
  unmount() { if (cleanup) cleanup(); cleanup = null; },
  stats() { return host.querySelector(".wb-views").wbViews; },
  theme(name) {
    const vars = this.THEMES[name] || {};
    const style = document.documentElement.style;
    for (const theme of Object.values(this.THEMES)) {
      for (const key of Object.keys(theme)) style.removeProperty(key);
    }
    for (const [key, value] of Object.entries(vars)) style.setProperty(key, value);
    document.body.setAttribute("data-jp-theme-light", name === "dark" ? "false" : "true");
  },
  frame() {
    return new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  },
};
window.harnessReady = true;
</script></body></html>
"""


def chromium_binary() -> Path:
    """The real Chromium binary that Debian's /usr/bin/chromium wrapper execs."""
    text = CHROMIUM_WRAPPER.read_text(errors="replace")
    app = re.search(r"^APPNAME=(\S+)", text, re.M)
    lib = re.search(r"^LIBDIR=(\S+)", text, re.M)
    if app is None or lib is None:
        raise FileNotFoundError(f"cannot read the Chromium binary's folder from {CHROMIUM_WRAPPER}")
    binary = Path(lib.group(1).replace("$APPNAME", app.group(1))) / app.group(1)
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is missing: apt-get install -y chromium")
    return binary


def page_html() -> str:
    import json

    return PAGE.replace("__THEMES__", json.dumps(THEMES))


@contextmanager
def views_page(bundle: Path = BUNDLE, width: int = 1220, height: int = 900) -> Iterator[Any]:
    """A Playwright page with the harness loaded and `window.harness` ready.

    The page's requests to hosts other than views.test are recorded in `page.foreign`.
    """
    from playwright.sync_api import sync_playwright

    script = bundle.read_bytes()
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(chromium_binary()), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": width, "height": height},
        )
        try:
            page = context.new_page()
            foreign: list[str] = []

            def serve(route: Any) -> None:
                url = route.request.url
                if url == f"{ORIGIN}/views.js":
                    route.fulfill(status=200, body=script, content_type="text/javascript")
                elif url in (f"{ORIGIN}/", f"{ORIGIN}/index.html"):
                    route.fulfill(status=200, body=page_html(), content_type="text/html")
                else:
                    route.fulfill(status=404, body="")

            def watch(request: Any) -> None:
                if not request.url.startswith(ORIGIN + "/"):
                    foreign.append(request.url)

            page.route(f"{ORIGIN}/**", serve)
            page.on("request", watch)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{ORIGIN}/")
            page.wait_for_function("window.harnessReady === true")
            page.foreign = foreign
            page.errors = errors
            yield page
        finally:
            context.close()

"""``workbench report``: a self-contained HTML report of one or more journals, for offline use.

The page needs no kernel and no network. Per journal it holds:

* the views (agent graph, timeline, step slider, inspector), drawn by the views' own bundle
  (``workbench/static/views.js``) from the view document of the journal
  (:func:`workbench._viewdoc.doc_from_journal`). The bundle is inlined, base64-encoded, in the
  page's one ``<script type="module">``, which imports it from a ``blob:`` URL and calls its
  ``renderDocument(el, doc)``: no file beside the HTML, no CDN, and no escaping of the
  bundle's text is needed. Each document is embedded as JSON in a ``<script
  type="application/json">`` with ``<``, ``>`` and ``&`` written as ``\\u003c`` ... so that no
  ``</script>`` or ``<!--`` can end or bend the element;
* the faults and a transcript (who sent what to whom, model replies, logs) as text, written
  here with every value HTML-escaped: agent text never becomes markup.

A Content-Security-Policy in the page forbids every fetch, so even a bundle that tried could
not reach the network. Everything is bounded: transcript lines per journal
(:data:`MAX_TRANSCRIPT_LINES`), characters per line (:data:`MAX_LINE_CHARS`), journals per
report (:data:`MAX_JOURNALS`); the view document bounds itself (docs/views.md).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError, WorkbenchError

BUNDLE = Path(__file__).parent / "static" / "views.js"
MAX_JOURNALS = 64
MAX_TRANSCRIPT_LINES = 2_000
MAX_FAULTS = 500
MAX_LINE_CHARS = 1_000

_CSP = ("default-src 'none'; script-src 'unsafe-inline' blob:; style-src 'unsafe-inline'; "
        "img-src data: blob:; font-src data:")


@dataclass(frozen=True)
class _RunPage:
    """What the report shows of one journal."""

    title: str
    doc: dict[str, Any]
    facts: list[tuple[str, str]]
    faults: list[str]
    transcript: list[str]
    cut: int  # transcript lines left out


def write_report(journals: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                 title: str = "workbench report", names: Sequence[str] | None = None) -> Path:
    """Write the report of ``journals`` (at most :data:`MAX_JOURNALS`) to ``out``; return it.

    Raises ConfigError for too many journals, JournalCorrupt / JournalError for a damaged
    or unreadable one, and OSError if ``out`` cannot be written. ``names``: a heading per
    journal (default: its file name, or its folder's for ``journal.wbj``). Without the views bundle
    (a checkout where ``extension/`` was not built) the report still has the text sections
    and says that the views are missing.
    """
    if len(journals) > MAX_JOURNALS:
        raise ConfigError(f"{len(journals)} journals for one report; at most {MAX_JOURNALS}")
    pages = [_page(Path(j), names[i] if names is not None and i < len(names) else None)
             for i, j in enumerate(journals)]
    bundle = BUNDLE.read_bytes() if BUNDLE.is_file() else None
    text = render_html(pages, title=title, bundle=bundle)
    target = Path(out)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


def _page(journal: Path, name: str | None) -> _RunPage:
    from workbench._events import FaultRaised, events_from_journal
    from workbench._viewdoc import doc_from_journal

    doc = doc_from_journal(journal)
    events = events_from_journal(journal)
    faults = [_cut(f"step {e.step}  {e.agent}  {e.fault_kind}: {e.detail}")
              for e in events if isinstance(e, FaultRaised)]
    lines = [line for e in events if (line := transcript_line(e)) is not None]
    title = name or (journal.name if journal.name != "journal.wbj" else journal.parent.name)
    return _RunPage(title, doc, _facts(doc, len(faults)), faults[:MAX_FAULTS],
                    lines[:MAX_TRANSCRIPT_LINES], max(0, len(lines) - MAX_TRANSCRIPT_LINES))


def _facts(doc: dict[str, Any], faults: int) -> list[tuple[str, str]]:
    header = doc.get("header") or {}
    engine = header.get("engine") or {}
    agents = [str(a.get("name")) for a in header.get("agents", [])]
    return [("seed", str(header.get("seed"))), ("policy", str(header.get("policy"))),
            ("model", str(engine.get("model", "none"))),
            ("provider", str(engine.get("provider", "-"))),
            ("steps", str(doc.get("status", {}).get("step", -1) + 1)),
            ("agents", _cut(", ".join(agents))), ("faults", str(faults))]


def transcript_line(event: Any) -> str | None:
    """One plain-text line for a committed event worth reading, else None."""
    from workbench._events import InferDone, LogLine, MessageSent, UserMessage

    if isinstance(event, UserMessage):
        text = f"you -> {event.to}: {_payload(event.payload)}"
    elif isinstance(event, MessageSent):
        text = f"{event.agent} -> {event.to}: {_payload(event.payload)}"
    elif isinstance(event, InferDone):
        said = f"error: {event.error}" if event.error else event.text
        text = f"{event.agent} <- model ({event.tokens} tokens): {said}"
    elif isinstance(event, LogLine):
        text = f"{event.agent} log: {event.text}"
    else:
        return None
    return _cut(f"[step {event.step}] {text}")


def _payload(payload: Any) -> str:
    from workbench._export import plain

    if isinstance(payload, str):
        return payload
    return json.dumps(plain(payload), ensure_ascii=False, sort_keys=True, default=repr)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LINE_CHARS else text[:MAX_LINE_CHARS] + " [...]"


def embed_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: ``<``, ``>``, ``&`` and the two JavaScript
    line separators are written as escapes, so the text can hold no ``</script>`` or
    ``<!--``; ``JSON.parse`` gives back the same value."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def render_html(pages: Sequence[_RunPage], *, title: str, bundle: bytes | None) -> str:
    """The report page (see the module docstring)."""
    esc = html.escape
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(_CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)} - workbench report</title>", f"<style>{_STYLE}</style>",
        "</head><body>", f"<header><h1>{esc(title)}</h1>",
        f"<p>{len(pages)} run(s). Rendered offline from the journals: no kernel, no network."
        "</p>"]
    if bundle is None:
        parts.append('<p class="wb-missing">The views bundle (workbench/static/views.js) is '
                     "not installed: build extension/ to see the graph and the timeline."
                     "</p>")
    if len(pages) > 1:
        parts.append("<nav><ol>" + "".join(
            f'<li><a href="#run-{i}">{esc(p.title)}</a></li>' for i, p in enumerate(pages))
            + "</ol></nav>")
    parts.append("</header><main>")
    parts += [_section(i, p) for i, p in enumerate(pages)]
    parts.append("</main>")
    if bundle is not None:
        parts.append(f'<script type="module">\nconst BUNDLE = '
                     f'"{base64.b64encode(bundle).decode("ascii")}";\n{_BOOT}</script>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _section(index: int, page: _RunPage) -> str:
    esc = html.escape
    facts = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in page.facts)
    faults = ("<ul>" + "".join(f"<li>{esc(f)}</li>" for f in page.faults) + "</ul>"
              if page.faults else "<p>none</p>")
    lines = "\n".join(esc(line) for line in page.transcript)
    cut = (f'<p class="wb-cut">{page.cut} more lines not shown (see the journal)</p>'
           if page.cut else "")
    return (f'<section class="wb-run" id="run-{index}"><h2>{esc(page.title)}</h2>'
            f'<dl class="wb-facts">{facts}</dl>'
            f'<div class="wb-views" data-doc="wb-doc-{index}"></div>'
            f'<h3>Faults</h3><div class="wb-faults">{faults}</div>'
            f'<h3>Transcript</h3><pre class="wb-transcript">{lines}</pre>{cut}'
            f'<script type="application/json" id="wb-doc-{index}">{embed_json(page.doc)}'
            "</script></section>")


_BOOT = """\
const bytes = Uint8Array.from(atob(BUNDLE), (c) => c.charCodeAt(0));
const url = URL.createObjectURL(new Blob([bytes], { type: "text/javascript" }));
const views = await import(url);
for (const el of document.querySelectorAll(".wb-views")) {
  try {
    const doc = JSON.parse(document.getElementById(el.dataset.doc).textContent);
    views.renderDocument(el, doc);
  } catch (err) {
    el.textContent = "The views could not be drawn: " + err;
  }
}
document.body.dataset.wbRendered = "true";
"""

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 0 16px 48px; color: #1f2328; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-top: 1px solid #d0d7de;
     padding-top: 16px; } h3 { font-size: 15px; }
.wb-facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; }
.wb-facts dt { color: #59636e; }
.wb-views { min-height: 120px; margin: 12px 0; }
.wb-transcript { white-space: pre-wrap; word-break: break-word; background: #f6f8fa;
                 padding: 8px; max-height: 480px; overflow: auto; }
.wb-missing { color: #9a6700; }
"""


# -- the command ------------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``workbench report``."""
    p = sub.add_parser("report", help="an offline HTML report of a journal (graph, timeline, "
                                      "transcript, faults)")
    p.add_argument("journal", nargs="+", help="journal file(s) (journal.wbj); several give "
                                              "one report with a section each")
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="the HTML file (default: report.html beside the first journal)")
    p.add_argument("--title", default=None, help="the page title (default: the journal name)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    first = Path(args.journal[0])
    out = Path(args.output) if args.output else first.parent / "report.html"
    title = args.title or (first.parent.name if first.name == "journal.wbj" else first.stem)
    missing = [j for j in args.journal if not Path(j).is_file()]
    if missing:
        print(f"workbench report: no journal at {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        path = write_report(args.journal, out, title=title)
    except (WorkbenchError, OSError) as exc:
        print(f"workbench report: {exc}", file=sys.stderr)
        return 1
    print(f"report: {path}")
    return 0

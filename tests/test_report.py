"""`workbench report`: a self-contained page that renders a journal offline in Chromium.

The graph has the run's agents, the timeline its spans, the slider moves, no request leaves
the page, and agent text stays text (with a negative control: the same check catches a page
that inserts that text as HTML)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab import chromium

import workbench as wb
from workbench import cli
from workbench._report import BUNDLE, embed_json, write_report
from workbench._viewdoc import doc_from_journal
from workbench.testing import FakeEngine

HOSTILE = '<img src=x onerror="window.pwned=1"></script><script>window.pwned=2</script><!--'
LOCAL_SCHEMES = ("file:", "blob:", "data:", "about:")


def ask(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    reply = host.infer({"prompt": f"turn {state['n']}", "max_tokens": 3})
    n = state["n"] + 1
    return {"state": {"n": n}, "outbox": [("shouter", {"text": reply["text"]})],
            "status": "done" if n >= 3 else "ready"}


def shouter(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    host.log(HOSTILE)
    return {"state": {"heard": state["heard"] + len(inbox)},
            "outbox": [("asker", HOSTILE)], "status": "idle"}


def crasher(state: Any, inbox: Any, host: Any) -> dict[str, Any]:
    raise RuntimeError(f"boom {HOSTILE}")


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "team.wbj"
    with wb.Run(seed=4, policy="parallel", model=FakeEngine(), journal=path) as run:
        run.add_agent("asker", ask, state={"n": 0})
        run.add_agent("shouter", shouter, state={"heard": 0})
        run.add_agent("crasher", crasher, state={})
        run.connect("asker", "shouter", both=True)
        run.run()
    return path


@pytest.fixture(scope="module")
def page(journal: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The report open in Chromium, every request it made counted."""
    assert BUNDLE.is_file(), "build extension/ first: the report inlines workbench/static/views.js"
    tmp = tmp_path_factory.mktemp("browser")
    report = write_report([journal], tmp / "report.html", title="team")
    with chromium(tmp) as context:
        page = context.new_page()
        page.requests = []  # type: ignore[attr-defined]
        page.errors = []  # type: ignore[attr-defined]
        context.on("request", lambda r: page.requests.append(r.url))  # type: ignore[attr-defined]
        page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
        page.goto(report.as_uri())
        page.wait_for_selector("body[data-wb-rendered]", timeout=15_000)
        page.wait_for_selector(".wb-node[data-agent]", timeout=15_000)
        yield page


def test_the_graph_has_the_runs_agents(page: Any) -> None:
    agents = page.eval_on_selector_all(".wb-node[data-agent]",
                                       "els => els.map(e => e.getAttribute('data-agent'))")
    assert sorted(set(agents)) == ["asker", "crasher", "shouter"]
    assert page.errors == []


def test_the_timeline_has_the_journals_spans(page: Any, journal: Path) -> None:
    spans = len(doc_from_journal(journal)["spans"])
    assert spans > 0
    note = page.text_content("[data-pane=timeline] .wb-pane-head")
    assert re.search(rf"(?<!\d){spans} spans\b", note), note


def test_the_slider_moves(page: Any) -> None:
    label = page.locator("[data-step-label]")
    last = label.text_content()
    assert re.fullmatch(r"step (\d+) of \1 \(latest\)", last), last
    slider = page.locator("input.wb-slider")
    slider.focus()
    page.keyboard.press("Home")
    page.wait_for_function(
        "() => document.querySelector('[data-step-label]').textContent.includes('step 0')")
    assert label.text_content() != last
    assert slider.input_value() == "0"


def test_no_request_leaves_the_page(page: Any) -> None:
    away = [url for url in page.requests if not url.startswith(LOCAL_SCHEMES)]
    assert page.requests and away == []


def injected(page: Any) -> dict[str, Any]:
    return page.evaluate("() => ({pwned: window.pwned ?? null, "
                         "imgs: document.querySelectorAll('img').length})")


def test_agent_text_stays_text(page: Any) -> None:
    assert injected(page) == {"pwned": None, "imgs": 0}
    transcript = page.text_content(".wb-transcript")
    assert f"shouter -> asker: {HOSTILE}" in transcript
    assert f"shouter log: {HOSTILE}" in transcript
    faults = page.text_content(".wb-faults")
    assert "crasher" in faults and HOSTILE in faults


def test_the_check_catches_text_inserted_as_html(page: Any) -> None:
    page.evaluate("(text) => { const d = document.createElement('div'); "
                  "d.innerHTML = text; document.body.appendChild(d); }", HOSTILE)
    page.wait_for_function("() => window.pwned === 1", timeout=5_000)
    assert injected(page)["imgs"] == 1  # the negative control: unsafe insertion is caught


def test_embedded_json_cannot_end_its_script_element() -> None:
    value = {"t": "</script><!-- & \u2028 >"}
    text = embed_json(value)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == value


def test_the_command(journal: Path, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    assert cli.main(["report", str(journal), "-o", str(out)]) == 0
    html = out.read_text()
    assert html.count('<script type="module">') == 1
    assert "<script src" not in html and "http://" not in html.split("const BUNDLE")[0]
    assert cli.main(["report", str(tmp_path / "missing.wbj")]) == 2
    damaged = tmp_path / "damaged.wbj"
    data = bytearray(journal.read_bytes())
    data[40] ^= 0xFF
    damaged.write_bytes(bytes(data))
    assert cli.main(["report", str(damaged), "-o", str(tmp_path / "d.html")]) == 1
    assert "workbench report:" in capsys.readouterr().err

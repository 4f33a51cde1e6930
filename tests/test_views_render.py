"""The views bundle rendered in headless Chromium with a fake widget model.

A static page loads workbench/static/views.js (scripts/views_harness.py); a FakeModel feeds
tests/fixtures/views/sample_doc.json and then deltas, and records what the views send.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.views_harness import views_page

FIXTURES = Path(__file__).parent / "fixtures" / "views"


def sample() -> dict[str, Any]:
    return json.loads((FIXTURES / "sample_doc.json").read_text())


@pytest.fixture(scope="module")
def browser_page() -> Iterator[Any]:
    with views_page() as page:
        yield page


@pytest.fixture
def page(browser_page: Any) -> Iterator[Any]:
    browser_page.evaluate("() => harness.theme('light')")
    yield browser_page
    browser_page.evaluate("() => harness.unmount()")
    assert browser_page.errors == []
    assert browser_page.foreign == []


def statuses(page: Any) -> dict[str, str]:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.wb-node')]
        .map((n) => [n.getAttribute('data-agent'), n.getAttribute('data-status')]))""")


def wait_status(page: Any, agent: str, status: str) -> None:
    page.wait_for_function(
        """([agent, status]) => [...document.querySelectorAll('.wb-node')].some(
            (n) => n.getAttribute('data-agent') === agent
                && n.getAttribute('data-status') === status)""",
        arg=[agent, status])


def sent(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("() => harness.model.sent")


def delta(doc: dict[str, Any], seq: int, step: dict[str, Any], live: dict[str, Any],
          spans: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "delta", "seq": seq, "steps": [step], "spans": spans or [],
            "status": {"state": "running", "step": step["t"], "reason": None}, "live": live}


def next_step(doc: dict[str, Any], t: int, statuses: dict[str, str]) -> dict[str, Any]:
    """A step where each named agent ran with the given status, its state one more round."""
    last = doc["steps"][-1]["results"]
    results = {}
    for name, status in statuses.items():
        result = copy.deepcopy(last.get(name) or next(iter(last.values())))
        result.update(status=status, fault=None, out=[{"to": "planner", "seq": 100 + t,
                                                         "payload": {"step": t}}])
        results[name] = result
    return {"t": t, "time": doc["steps"][-1]["time"] + 0.4, "ran": list(statuses),
            "sends": [], "results": results, "warnings": []}


def seek(page: Any, index: int) -> None:
    page.evaluate("""(index) => {
        const slider = document.querySelector('.wb-slider');
        slider.value = String(index);
        slider.dispatchEvent(new Event('input'));
    }""", index)
    page.evaluate("() => harness.frame()")  # the views render in the next animation frame


def test_nodes_show_statuses_and_deltas_change_them(page: Any) -> None:
    doc = sample()
    page.evaluate("(doc) => harness.mount(doc)", doc)
    wait_status(page, "critic", "faulted")
    assert statuses(page) == {"planner": "ready", "researcher": "waiting", "critic": "faulted",
                              "writer": "running", "counter": "done"}
    step = next_step(doc, 12, {"planner": "idle", "writer": "ready", "researcher": "ready"})
    page.evaluate("""() => {
        window.__pulsed = [];
        new MutationObserver((records) => {
            for (const r of records) if (r.target.classList.contains('wb-active'))
                window.__pulsed.push(r.target.getAttribute('data-edge'));
        }).observe(document.querySelector('.wb-graph-body svg'),
                   { attributes: true, attributeFilter: ['class'], subtree: true });
    }""")
    page.evaluate("(m) => harness.model.custom(m)",
                  delta(doc, doc["seq"] + 1, step, {"running": ["planner"], "waiting": [],
                                                    "streaming": {}}))
    wait_status(page, "writer", "ready")
    assert statuses(page) == {"planner": "running", "researcher": "ready", "critic": "faulted",
                              "writer": "ready", "counter": "done"}
    assert page.inner_text("[data-step-label]") == "step 12 of 12 (latest)"
    # The drawn edge that carried a message in the new step pulsed, and no other (the new
    # routes from the researcher and the planner are drawn at the next layout).
    page.wait_for_function("() => window.__pulsed.length > 0")
    assert set(page.evaluate("() => window.__pulsed")) == {"writer → planner"}
    # The edge that carried messages in the new step counts them.
    label = page.evaluate("""() => [...document.querySelectorAll('.wb-edge')]
        .find((e) => e.getAttribute('data-edge') === 'writer → planner')
        .querySelector('text').textContent""")
    counts_before = sum(1 for s in doc["steps"] for m in s["results"].get("writer", {})
                        .get("out", []) if m["to"] == "planner")
    assert label == str(counts_before + 1)
    assert sent(page) == []


def test_a_seq_gap_sends_hello_and_a_doc_message_replaces_everything(page: Any) -> None:
    doc = sample()
    page.evaluate("(doc) => harness.mount(doc)", doc)
    wait_status(page, "critic", "faulted")
    step = next_step(doc, 12, {"writer": "done"})
    page.evaluate("(m) => harness.model.custom(m)",
                  delta(doc, doc["seq"] + 2, step, doc["live"]))
    page.wait_for_function("() => harness.model.sent.length > 0")
    assert [m["type"] for m in sent(page)] == ["hello"]
    assert statuses(page)["writer"] == "running"  # nothing of the gapped delta was applied
    fresh = sample()
    fresh["seq"] = doc["seq"] + 2
    fresh["steps"].append(step)
    fresh["live"] = {"running": [], "waiting": [], "streaming": {}}
    page.evaluate("(doc) => harness.model.custom({type: 'doc', doc})", fresh)
    wait_status(page, "writer", "done")


def test_an_absent_doc_traitlet_asks_for_the_document(page: Any) -> None:
    page.evaluate("() => harness.mount(null)")
    page.wait_for_function("() => harness.model.sent.length > 0")
    assert [m["type"] for m in sent(page)] == ["hello"]
    page.evaluate("(doc) => harness.model.setDoc(doc)", sample())
    wait_status(page, "critic", "faulted")


def test_clicking_a_node_opens_the_inspector_with_its_state(page: Any) -> None:
    doc = sample()
    page.evaluate("(doc) => harness.mount(doc)", doc)
    wait_status(page, "critic", "faulted")
    page.click('.wb-node[data-agent="critic"]')
    page.wait_for_selector("[data-inspector-agent]")
    assert page.inner_text("[data-inspector-agent]") == "critic"
    page.click('[data-pane="graph"] button:text-is("Fit")')  # keeps the selection
    page.evaluate("() => harness.frame()")
    assert page.inner_text("[data-inspector-agent]") == "critic"
    body = page.inner_text(".wb-inspector-body")
    assert "out of fuel" in body
    state = doc["steps"][7]["results"]["critic"]["state"]
    assert f'"{state["last"]}"' in body and "reviews" in body
    assert page.get_attribute("[data-inspector-status]", "data-inspector-status") == "faulted"
    # The trimmed result of step 0 says so.
    page.click('.wb-node[data-agent="planner"]')
    seek(page, 0)
    page.wait_for_selector('[data-trimmed="result"]')
    assert "trimmed" in page.inner_text(".wb-inspector-body")


def test_the_inspector_shows_a_faults_traceback_as_text(page: Any) -> None:
    doc = sample()
    trace = "  step line 4: return {'x': 1 // 0}  <img src=x onerror=alert(1)>\n"
    fault = doc["steps"][7]["results"]["critic"]["fault"]
    fault["data"] = {"where": "step line 4", "traceback": trace}
    page.evaluate("(doc) => harness.mount(doc)", doc)
    wait_status(page, "critic", "faulted")
    page.click('.wb-node[data-agent="critic"]')
    page.wait_for_selector("[data-traceback]")
    assert page.inner_text("[data-traceback]").strip() == trace.strip()
    assert page.locator("[data-pane=inspector] img").count() == 0


def test_the_slider_shows_an_earlier_steps_statuses_and_inbox(page: Any) -> None:
    doc = sample()
    page.evaluate("(doc) => harness.mount(doc)", doc)
    wait_status(page, "critic", "faulted")
    page.click('.wb-node[data-agent="writer"]')
    seek(page, 5)
    wait_status(page, "critic", "ready")
    shown = statuses(page)
    expected = {}
    for name in shown:
        last = [s["results"][name]["status"] for s in doc["steps"][:6] if name in s["results"]]
        expected[name] = last[-1]
    assert shown == expected
    assert page.inner_text("[data-step-label]") == "step 5 of 11"
    assert "as of step 5" in page.inner_text('[data-pane="inspector"] .wb-pane-head')
    # The inbox: messages to the writer sent at or after its last run (step 5).
    wanted = sorted((name, m["seq"]) for name, r in doc["steps"][5]["results"].items()
                    for m in r["out"] if m["to"] == "writer")
    items = page.eval_on_selector_all("[data-inbox] li",
                                      "(items) => items.map((i) => i.textContent)")
    assert len(items) == len(wanted)
    for (sender, seq), text in zip(wanted, items, strict=True):
        assert text.startswith(f"{sender} #{seq} · for step 6")
    page.click("text=Latest")
    wait_status(page, "critic", "faulted")


def test_rewind_and_fork_are_confirmed_in_the_widget(page: Any) -> None:
    doc = sample()
    doc["status"] = {"state": "paused", "step": 11, "reason": None}
    page.evaluate("(doc) => harness.mount(doc)", doc)
    wait_status(page, "critic", "faulted")
    seek(page, 4)
    page.click('[data-action="rewind"]')
    page.wait_for_selector('[data-confirm="rewind"]')
    assert sent(page) == []
    assert "Rewind the run to step 4?" in page.inner_text("[data-notice]")
    page.click('[data-confirm="rewind"]')
    messages = sent(page)
    assert len(messages) == 1 and messages[0]["type"] == "rewind" and messages[0]["step"] == 4
    assert isinstance(messages[0]["id"], int)
    page.click('[data-action="fork"]')
    page.click("[data-cancel]")
    assert len(sent(page)) == 1
    # A failed reply shows its error in the widget.
    page.evaluate("(id) => harness.model.custom({type: 'reply', id, ok: false, "
                  "error: 'the run is closed', result: null})", messages[0]["id"])
    page.wait_for_selector("[data-error]")
    assert page.inner_text("[data-error]") == "rewind to step 4 failed: the run is closed"
    # A rewind that succeeds comes back as a document ending at that step: the view follows it.
    rewound = sample()
    rewound["seq"] = doc["seq"] + 1
    rewound["steps"] = rewound["steps"][:5]
    rewound["status"] = {"state": "paused", "step": 4, "reason": None}
    page.evaluate("(doc) => harness.model.custom({type: 'doc', doc})", rewound)
    page.wait_for_function("""() => document.querySelector('[data-step-label]').textContent
        === 'step 4 of 4 (latest)'""")


def test_controls_send_control_messages_and_are_disabled_for_a_journal(page: Any) -> None:
    doc = sample()
    doc["status"] = {"state": "paused", "step": 11, "reason": None}
    page.evaluate("(doc) => harness.mount(doc)", doc)
    wait_status(page, "critic", "faulted")
    page.click('[data-action="step"]')
    page.click('[data-action="run"]')
    actions = [(m["type"], m["action"]) for m in sent(page)]
    assert actions == [("control", "step"), ("control", "run")]
    assert page.is_disabled('[data-action="pause"]')
    doc["source"] = "journal"
    page.evaluate("(doc) => harness.mount(doc)", doc)
    wait_status(page, "critic", "faulted")
    for action in ("run", "pause", "step"):
        assert page.is_disabled(f'[data-action="{action}"]')
    assert not page.is_visible('[data-action="rewind"]')


def test_render_document_works_offline(page: Any) -> None:
    page.evaluate("(doc) => harness.offline(doc)", sample())
    wait_status(page, "critic", "faulted")
    for action in ("run", "pause", "step"):
        assert page.is_disabled(f'[data-action="{action}"]')
    assert not page.is_visible('[data-action="rewind"]')
    seek(page, 2)
    wait_status(page, "critic", "ready")
    page.click('.wb-node[data-agent="counter"]')
    assert page.inner_text("[data-inspector-agent]") == "counter"


def decode_pixels(page: Any) -> int:
    """Pixels of the timeline canvas in the decode colour."""
    return page.evaluate("""() => {
        const canvas = document.querySelector('[data-timeline]');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 0; i < data.length; i += 4) {
            const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
            if (Math.abs(r - 61) < 6 && Math.abs(g - 139) < 6 && Math.abs(b - 217) < 6) n++;
        }
        return n;
    }""")


def test_the_timeline_canvas_draws_spans_and_follows_deltas(page: Any) -> None:
    doc = sample()
    page.evaluate("(doc) => harness.mount(doc)", doc)
    page.wait_for_function("() => harness.stats().timeline.spansDrawn > 0")
    stats = page.evaluate("() => harness.stats().timeline")
    assert stats["spansDrawn"] > 100
    assert decode_pixels(page) > 500
    before = page.evaluate("() => harness.stats().spans()")
    step = next_step(doc, 12, {"writer": "ready"})
    t0 = step["time"] - 0.3
    spans = [{"lane": "writer", "kind": "decode", "t0": t0, "t1": t0 + 0.2, "step": 12,
              "agent": "writer", "batch": 0, "provider": "CPUExecutionProvider", "tokens": 30,
              "fallback": False}]
    page.evaluate("(m) => harness.model.custom(m)",
                  delta(doc, doc["seq"] + 1, step, doc["live"], spans))
    page.wait_for_function(f"() => harness.stats().spans() === {before + 1}")
    page.wait_for_function(f"() => harness.stats().timeline.draws > {stats['draws']}")
    # Zoom in on the middle: fewer spans drawn than in the whole view.
    box = page.locator(".wb-timeline-body").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 60)
    for _ in range(5):
        page.mouse.wheel(0, -400)
    page.wait_for_function(f"() => harness.stats().timeline.spansDrawn < {stats['spansDrawn']}")


def test_a_large_team_is_drawn_on_a_canvas(page: Any) -> None:
    agents = [{"name": f"agent-{i:04d}", "kind": "wasm" if i % 3 else "python", "caps": [],
               "fuel": None, "memory": None, "state": i} for i in range(400)]
    channels = [[f"agent-{(i - 1) // 4:04d}", f"agent-{i:04d}"] for i in range(1, 400)]
    results = {a["name"]: {"status": "faulted" if i % 50 == 0 else "ready", "fault": None,
                           "state": i, "out": [], "logs": [], "infer": [], "tokens": 0,
                           "requests": 0, "fuel": None, "memory": None, "trimmed": False}
               for i, a in enumerate(agents)}
    doc = {"format": 1, "seq": 1, "source": "live", "title": "big", "clock": "logical",
           "header": {"seed": 0, "policy": "parallel", "max_batch": 8, "engine": None,
                      "agents": agents, "channels": channels},
           "steps": [{"t": 0, "time": None, "ran": list(results), "sends": [],
                      "results": results, "warnings": []}],
           "spans": [], "status": {"state": "paused", "step": 0, "reason": None},
           "live": {"running": [], "waiting": [], "streaming": {}},
           "trimmed": {"steps": 0, "spans": 0}}
    page.evaluate("(doc) => harness.mount(doc)", doc)
    page.wait_for_function("() => harness.stats().graph.draws > 0")
    graph = page.evaluate("() => harness.stats().graph")
    assert graph["mode"] == "canvas" and graph["canvasView"] == "status" and graph["layouts"] == 1
    assert page.locator(".wb-node").count() == 0
    assert page.inner_text('[data-status-count="faulted"]') == "faulted 8"
    # A faulted agent's square opens it in the inspector.
    spot = page.evaluate("() => harness.stats().graph.locate('agent-0050')")
    box = page.locator(".wb-graph-body").bounding_box()
    page.mouse.click(box["x"] + spot["x"], box["y"] + spot["y"])
    page.wait_for_selector("[data-inspector-agent]")
    assert page.inner_text("[data-inspector-agent]") == "agent-0050"
    assert page.get_attribute("[data-inspector-status]", "data-inspector-status") == "faulted"
    # The laid-out graph on the canvas: the same agent is found there too.
    draws = page.evaluate("() => harness.stats().graph.draws")
    page.click("[data-graph-view]")
    page.wait_for_function(f"() => harness.stats().graph.draws > {draws}")
    assert page.evaluate("() => harness.stats().graph.canvasView") == "layout"
    assert page.evaluate("() => harness.stats().graph.locate('agent-0050')") is not None


XSS = [
    '<img src=x onerror="window.__xssHits=(window.__xssHits||0)+1">',
    "<script>window.__xssHits=(window.__xssHits||0)+100</script>",
    '<a href="javascript:window.__xssHits=1000">click</a>',
    '<svg onload="window.__xssHits=(window.__xssHits||0)+1"></svg>',
    "\x1b[31mred alert\x1b[0m \x1b]8;;javascript:alert(1)\x07osc link\x1b]8;;\x07",
]
EVIL = " ".join(XSS)

WATCH = """() => {
    window.__hits = [];
    const bad = (node) => {
        if (node.nodeType !== 1) return false;
        const tag = node.tagName.toLowerCase();
        if (["img", "script", "iframe", "object", "embed", "a"].includes(tag)) return true;
        for (const attr of node.attributes) {
            if (attr.name.startsWith("on")) return true;
            if (/^\\s*javascript:/i.test(attr.value) && ["href", "src", "xlink:href", "action"]
                .includes(attr.name)) return true;
        }
        return false;
    };
    const where = (el) => (el.closest && el.closest("#control") ? "control" : "views");
    const check = (node) => {
        if (bad(node)) window.__hits.push(where(node) + ":" + node.tagName.toLowerCase());
        if (node.nodeType === 1) for (const child of node.querySelectorAll("*")) {
            if (bad(child)) window.__hits.push(where(child) + ":" + child.tagName.toLowerCase());
        }
    };
    const observer = new MutationObserver((records) => {
        for (const record of records) {
            for (const node of record.addedNodes) check(node);
            if (record.type === "attributes") check(record.target);
        }
    });
    observer.observe(document.body, { childList: true, subtree: true, attributes: true });
    window.__observer = observer;
}"""


def evil_doc() -> dict[str, Any]:
    doc = sample()
    name = f"mallory {XSS[0]}"
    doc["title"] = EVIL
    doc["header"]["agents"].append({"name": name, "kind": XSS[1], "caps": [XSS[2]], "fuel": None,
                                    "memory": None, "state": {XSS[0]: EVIL}})
    doc["header"]["channels"].append([name, "planner"])
    last = doc["steps"][-1]
    last["ran"].append(name)
    last["results"][name] = {
        "status": "faulted", "fault": {"kind": XSS[3], "detail": EVIL},
        "state": {"html": EVIL, XSS[1]: [XSS[2], {"deep": XSS[0]}]},
        "out": [{"to": "planner", "seq": 0, "payload": {"text": EVIL}}],
        "logs": [EVIL, XSS[4]],
        "infer": [{"call": 0, "text": EVIL, "tokens": 3, "finish": XSS[2], "provider": XSS[0],
                   "error": EVIL}],
        "tokens": 3, "requests": 1, "fuel": None, "memory": None, "trimmed": False}
    last["sends"].append({"to": name, "seq": 9, "payload": EVIL})
    doc["status"]["reason"] = EVIL
    doc["spans"].append({"lane": name, "kind": "decode", "t0": 0.1, "t1": 0.2, "step": 11,
                         "agent": name, "batch": 0, "provider": XSS[1], "tokens": 3,
                         "fallback": True})
    return doc


def test_agent_text_is_rendered_as_text_with_a_negative_control(page: Any) -> None:
    page.evaluate(WATCH)
    doc = evil_doc()
    name = doc["header"]["agents"][-1]["name"]
    page.evaluate("(doc) => harness.mount(doc)", doc)
    wait_status(page, name, "faulted")
    page.click(".wb-node >> nth=5")
    page.wait_for_selector("[data-logs]")
    assert page.inner_text("[data-inspector-agent]").startswith("mallory <img")
    page.evaluate("(m) => harness.model.custom(m)", {"type": "reply", "id": None, "ok": False,
                                                      "error": EVIL, "result": None})
    page.wait_for_selector("[data-error]")
    text = page.inner_text(".wb-views")
    assert "red alert" in text and "osc link" in text
    assert "\x1b" not in page.evaluate("() => document.querySelector('.wb-views').textContent")
    assert "<script>" in text  # shown as text
    page.evaluate("() => harness.frame()")
    # The negative control: the same text through innerHTML must be caught by the same check.
    page.evaluate("""(evil) => {
        const control = document.createElement('div');
        control.id = 'control';
        document.body.appendChild(control);
        const inner = document.createElement('div');
        inner.innerHTML = evil;
        control.appendChild(inner);
    }""", EVIL)
    # The img's onerror fires once its request fails (Chromium runs no onload of an svg
    # inserted by innerHTML; the observer still catches the element).
    page.wait_for_function("() => (window.__xssHits || 0) >= 1")
    page.evaluate("() => harness.frame()")
    hits = page.evaluate("() => window.__hits")
    assert [h for h in hits if not h.startswith("control:")] == []
    assert {"control:img", "control:script", "control:a", "control:svg"} <= set(hits)
    assert page.evaluate("() => window.__xssHits") == 1  # the control's alone
    page.evaluate("() => { window.__observer.disconnect(); document.getElementById('control')"
                  ".remove(); window.__xssHits = 0; }")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_screenshots_of_each_pane(page: Any, theme: str, tmp_path_factory: Any) -> None:
    out = tmp_path_factory.mktemp(f"views-{theme}")
    page.evaluate("(name) => harness.theme(name)", theme)
    page.evaluate("(doc) => harness.mount(doc)", sample())
    wait_status(page, "critic", "faulted")
    page.click('.wb-node[data-agent="critic"]')
    page.evaluate("() => harness.frame()")
    background = page.evaluate(
        "() => getComputedStyle(document.querySelector('.wb-views')).backgroundColor")
    assert background == ("rgb(17, 17, 17)" if theme == "dark" else "rgb(255, 255, 255)")
    for pane in ("controls", "graph", "inspector", "timeline"):
        path = out / f"{pane}.png"
        page.locator(f'[data-pane="{pane}"]').screenshot(path=str(path))
        assert path.stat().st_size > 5000
    page.locator(".wb-views").screenshot(path=str(out / "full.png"))
    print(f"screenshots: {out}")


def expected_statuses(doc: dict[str, Any]) -> dict[str, str]:
    """Each agent's status after the last step, with the live overlay, derived here."""
    statuses = {a["name"]: "ready" for a in doc["header"]["agents"]}
    for step in doc["steps"]:
        for name, result in step["results"].items():
            if name in statuses:
                statuses[name] = result["status"]
    for name in doc["live"]["running"]:
        statuses[name] = "running"
    for name in doc["live"]["waiting"]:
        statuses[name] = "waiting"
    return statuses


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_every_fixture_document_renders(page: Any, name: str) -> None:
    doc = json.loads((FIXTURES / name).read_text())
    page.evaluate("(doc) => harness.mount(doc)", doc)
    page.wait_for_function("() => harness.stats().timeline.spansDrawn > 0")
    page.wait_for_function("(n) => document.querySelectorAll('.wb-node[data-status]').length === n",
                           arg=len(doc["header"]["agents"]))
    assert statuses(page) == expected_statuses(doc)
    assert page.evaluate("() => harness.stats().spans()") == len(doc["spans"])


def test_live_updates_keep_the_inspectors_folds_and_scroll(page: Any) -> None:
    doc = sample()
    page.evaluate("(doc) => harness.mount(doc)", doc)
    wait_status(page, "planner", "ready")
    page.click('.wb-node[data-agent="planner"]')
    plan = ".wb-json details details:has(> summary > .wb-k:text-is('plan: '))"
    page.wait_for_selector(plan)
    assert page.eval_on_selector(plan, "(d) => d.open") is True
    page.click(f"{plan} > summary")
    assert page.eval_on_selector(plan, "(d) => d.open") is False
    page.eval_on_selector(".wb-inspector-body", "(b) => { b.scrollTop = 40; }")
    step = next_step(doc, 12, {"planner": "ready"})
    page.evaluate("(m) => harness.model.custom(m)",
                  delta(doc, doc["seq"] + 1, step, doc["live"]))
    page.wait_for_function("""() => document.querySelector('[data-pane="inspector"] .wb-pane-head')
        .textContent.includes('as of step 12')""")
    assert page.eval_on_selector(plan, "(d) => d.open") is False
    assert page.eval_on_selector(".wb-inspector-body", "(b) => b.scrollTop") == 40
    # Another agent starts from the default folds.
    page.click('.wb-node[data-agent="researcher"]')
    notes = ".wb-json details details:has(> summary > .wb-k:text-is('notes: '))"
    page.wait_for_selector(notes)
    assert page.eval_on_selector(notes, "(d) => d.open") is True


def test_hovering_a_span_shows_its_details(page: Any) -> None:
    doc = sample()
    page.evaluate("(doc) => harness.mount(doc)", doc)
    page.wait_for_function("() => harness.stats().timeline.spansDrawn > 0")
    span = next(s for s in doc["spans"] if s["lane"] == "writer" and s["kind"] == "decode"
                and s["fallback"])
    spot = page.evaluate("([lane, t]) => harness.stats().timeline.pointAt(lane, t)",
                         ["writer", (span["t0"] + span["t1"]) / 2])
    box = page.locator(".wb-timeline-body").bounding_box()
    page.mouse.move(box["x"] + spot["x"], box["y"] + spot["y"])
    tip = '[data-pane="timeline"] .wb-tip'
    page.wait_for_selector(tip, state="visible")
    lines = page.inner_text(tip).splitlines()
    assert lines[0] == "decode · writer"
    assert lines[1] == f"step {span['step']} · batch {span['batch']}"
    assert f"{span['tokens']} tokens" in lines
    assert "fell back to another provider" in lines
    page.mouse.move(box["x"] + 5, box["y"] + 5)
    page.wait_for_selector(tip, state="hidden")


def test_a_theme_switch_redraws_the_canvases_and_step_warnings_show(page: Any) -> None:
    doc = sample()
    doc["live"]["streaming"] = {}  # (streaming animates the canvas, redrawing it anyway)
    page.evaluate("(doc) => harness.mount(doc)", doc)
    page.wait_for_function("() => harness.stats().timeline.spansDrawn > 0")
    page.evaluate("() => harness.frame()")
    corner = """() => Array.from(document.querySelector('[data-timeline]').getContext('2d')
        .getImageData(2, 40, 1, 1).data.slice(0, 3))"""
    light = page.evaluate(corner)
    page.evaluate("() => harness.theme('dark')")
    page.wait_for_function(f"() => ({corner})().join() !== {json.dumps(','.join(map(str, light)))}")
    assert sum(page.evaluate(corner)) < sum(light)
    seek(page, 5)
    page.wait_for_function("""() => document.querySelector('[data-step-label]')
        .textContent.startsWith('step 5 ')""")
    notice = page.inner_text("[data-notice]")
    assert "Step 5: 1 warning: " in notice and "provider_fallback" in notice

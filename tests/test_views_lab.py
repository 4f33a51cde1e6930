"""End to end: the views in a real JupyterLab in Debian's Chromium, driving a real run of
WebAssembly agents on the tiny model in the notebook's kernel.

A notebook starts the run in the background and shows it. The test watches node statuses
change in the DOM as steps commit, pauses the run from the view (and checks the journal
stops growing), opens the inspector of a node, moves the step slider to an earlier step,
and rewinds the kernel-side run there from the view (checked in the journal). Screenshots
go to the test's temporary folder (``WORKBENCH_SCREENSHOTS`` names another folder).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.lab import chromium, chromium_installed, jupyterlab, open_notebook
from workbench._journal import read_journal
from workbench._records import AgentResult, Commit

pytestmark = [pytest.mark.slow]

SETUP = """\
import time
from pathlib import Path
import workbench as wb
from workbench._engine._tiny import make_tiny_model
from tests.pool_agents import counter_wasm

model = make_tiny_model(Path(FOLDER) / "tiny")

def metronome(state, inbox, host):
    time.sleep(0.25)  # paces the run so that the test can pause it mid-way
    return {"state": state + 1, "outbox": [("c0", {"tick": state})], "status": "ready"}

run = wb.Run(seed=4, policy="parallel", model=model, journal=JOURNAL, workers=1)
for i in range(3):
    run.add_agent(f"c{i}", counter_wasm(infer=True), capabilities=["log", "random", "infer"],
                  state=i)
run.add_agent("metronome", metronome, state=0)
run.connect("metronome", "c0")
"""
START = "run.start(STEPS)\nrun"
STEPS = 60


def commits(journal: Path) -> int:
    return sum(1 for r in read_journal(journal).typed if isinstance(r, Commit))


def state_at(journal: Path, agent: str, step: int) -> Any:
    """The agent's committed state at the end of ``step`` (from the journal)."""
    state = None
    for r in read_journal(journal).typed:
        if isinstance(r, AgentResult) and r.agent == agent and r.step <= step:
            state = r.state
    return state


def wait_for(page: Any, script: str, timeout_s: float = 60, arg: Any = None) -> Any:
    return page.wait_for_function(script, arg=arg, timeout=timeout_s * 1000).json_value()


@pytest.mark.skipif(not chromium_installed(), reason="needs Debian's chromium (CI installs it)")
def test_the_views_in_jupyterlab_follow_and_drive_a_real_run(tmp_path: Path) -> None:
    shots = Path(os.environ.get("WORKBENCH_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    journal = tmp_path / "run" / "journal.wbj"
    with jupyterlab(tmp_path / "lab") as lab, chromium(tmp_path / "browser") as browser:
        outside: list[str] = []
        page = open_notebook(lab, browser, "views.ipynb", [
            f"FOLDER = {str(tmp_path)!r}\nJOURNAL = {str(journal)!r}\nSTEPS = {STEPS}\n"
            + SETUP, START], outside)
        # watch node statuses from before the run starts
        page.evaluate("""() => {
            window.__wbStatuses = [];
            new MutationObserver((records) => {
                for (const r of records) {
                    const el = r.target;
                    if (el.getAttribute && el.hasAttribute('data-agent')) {
                        window.__wbStatuses.push([el.getAttribute('data-agent'),
                                                  el.getAttribute('data-status')]);
                    }
                }
            }).observe(document.body, {subtree: true, attributes: true,
                                       attributeFilter: ['data-status']});
        }""")
        page.evaluate("() => window.jupyterapp.commands.execute('runmenu:run-all')")
        nodes = "[data-pane=graph] [data-agent]"
        wait_for(page, f"() => document.querySelectorAll('{nodes}').length === 4", 90)
        wait_for(page, "() => window.__wbStatuses.length >= 6", 60)
        page.screenshot(path=str(shots / "lab-running.png"))
        seen = page.evaluate("() => window.__wbStatuses")
        assert {agent for agent, _ in seen} >= {"c0", "c1", "c2"}
        assert len({status for _, status in seen}) >= 2  # statuses change as steps commit

        # pause from the view: the run stops mid-way and the journal stops growing
        wait_for(page, "() => { const p = document.querySelector('[data-run-state]');"
                       " return p && p.getAttribute('data-state') === 'running'; }", 30)
        deadline = time.monotonic() + 60
        while commits(journal) < 6:  # far enough for the slider and rewind to go back
            assert time.monotonic() < deadline, "the run did not reach step 6"
            time.sleep(0.05)
        page.click("[data-action=pause]")
        wait_for(page, "() => document.querySelector('[data-run-state]')"
                       ".getAttribute('data-state') === 'paused'", 30)
        paused = commits(journal)
        time.sleep(1.0)
        assert commits(journal) == paused
        assert 6 <= paused < STEPS
        page.screenshot(path=str(shots / "lab-paused.png"))

        # the inspector of a node shows its state (as of the latest step)
        page.click("[data-pane=graph] [data-agent=c1]")
        wait_for(page, "() => { const a = document.querySelector('[data-inspector-agent]');"
                       " return a && a.textContent.includes('c1'); }", 10)
        inspector = page.inner_text("[data-pane=inspector]")
        assert str(state_at(journal, "c1", paused - 1)) in inspector.replace(",", "")
        page.screenshot(path=str(shots / "lab-inspector.png"))

        # the slider shows an earlier step, read from the document (no re-execution)
        page.evaluate("""() => {
            const s = document.querySelector('input.wb-slider');
            s.value = '2';
            s.dispatchEvent(new Event('input', {bubbles: true}));
        }""")
        wait_for(page, "() => document.querySelector('[data-step-label]')"
                       ".textContent.startsWith('step 2 ')", 10)
        inspector = page.inner_text("[data-pane=inspector]")
        assert str(state_at(journal, "c1", 2)) in inspector.replace(",", "")
        assert commits(journal) == paused  # looking back ran nothing

        # "rewind here", confirmed in the view: the kernel-side run is rewound to step 2
        page.click("[data-action=rewind]")
        page.click("[data-confirm=rewind]")
        deadline = time.monotonic() + 30
        while commits(journal) != 3:
            assert time.monotonic() < deadline, f"journal has {commits(journal)} steps"
            time.sleep(0.1)
        wait_for(page, "() => document.querySelector('[data-step-label]')"
                       ".textContent.includes('of 2')", 30)
        page.screenshot(path=str(shots / "lab-rewound.png"))
        errors = page.evaluate("""() => Array.from(document.querySelectorAll(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"],'
            + ' .jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]'))
            .map(e => e.textContent)""")
        assert not [e for e in errors if "Traceback" in e or "Error" in e], errors
    assert outside == [], f"the page reached other hosts: {json.dumps(outside[:5])}"

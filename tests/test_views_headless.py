"""The views in a notebook executed headless (nbclient, widget state stored, as
`workbench run` does): the saved widget state holds the graph and the timeline of the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.test_views_kernel import without_measures
from workbench._viewdoc import doc_from_journal

ROOT = Path(__file__).resolve().parent.parent
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

SETUP = """\
import workbench as wb
from tests.pool_agents import CAPS, counter_wasm
from workbench.testing import FakeEngine

def writer(state, inbox, host):
    reply = host.infer({"messages": [{"role": "user", "content": f"draft {state}"}],
                        "max_tokens": 5})
    return {"state": state + 1, "outbox": [("critic", {"draft": reply["text"]})],
            "status": "ready" if state < 3 else "done"}

def critic(state, inbox, host):
    host.log(f"read {len(inbox)} drafts")
    return {"state": state + len(inbox), "status": "idle"}
"""

RUN = """\
run = wb.Run(seed=11, policy="parallel", journal=JOURNAL, workers=0, model=FakeEngine())
run.add_agent("writer", writer, state=0, capabilities=["infer"])
run.add_agent("critic", critic, state=0, capabilities=["log"])
run.add_agent("counter", counter_wasm(), capabilities=CAPS, state=1)
run.connect("writer", "critic")
run.run(6)
run
"""


def widget_docs(nb: Any) -> dict[str, dict[str, Any]]:
    """The saved ``doc`` of every RunView in the notebook's widget state, by model id."""
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    return {mid: m["state"]["doc"] for mid, m in state.items()
            if "doc" in m.get("state", {}) and m["state"].get("_esm")}


@pytest.mark.slow
def test_a_headless_notebook_saves_the_views_of_its_run(tmp_path: Path) -> None:
    journal = tmp_path / "run.wbj"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP),
                nbformat.v4.new_code_cell(f"JOURNAL = {str(journal)!r}\n" + RUN),
                nbformat.v4.new_code_cell("run.close()\nwb.view(JOURNAL)")]
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            store_widget_state=True,
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    docs = widget_docs(nb)
    assert len(docs) == 2  # the live view of the run and the view of its journal
    shown = [o["data"][WIDGET_VIEW]["model_id"] for cell in nb.cells[1:]
             for o in cell.outputs if WIDGET_VIEW in o.get("data", {})]
    assert len(shown) == 2 and set(shown) == set(docs)
    live, journal_view = docs[shown[0]], docs[shown[1]]
    rebuilt = doc_from_journal(journal)
    assert json.loads(json.dumps(journal_view)) == json.loads(json.dumps(rebuilt))
    # the graph: every agent, its channels, the last step's statuses
    assert [a["name"] for a in live["header"]["agents"]] == ["writer", "critic", "counter"]
    assert live["header"]["channels"] == [["writer", "critic"]]
    assert len(live["steps"]) == 6
    assert without_measures(live["steps"]) == without_measures(rebuilt["steps"])
    assert live["status"]["step"] == 5
    # the timeline: measured spans of every request that reached the (fake) engine
    requests = sum(1 for s in live["steps"] for r in s["results"].values() if r["infer"])
    decode = [s for s in live["spans"] if s["kind"] == "decode"]
    assert len(decode) == requests == 4
    assert all(s["lane"] == "writer" and s["t1"] >= s["t0"] >= 0 for s in decode)
    assert any(s["lane"] == "engine" for s in live["spans"])

"""The notebook tour and the examples run headless, twice: the same journals, byte for byte,
and the same outputs once timings and paths are normalised. The notebooks match their
generator (scripts/make_notebooks.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from headless_helpers import normalised_outputs
from lab import chromium

from workbench._headless import run_notebook
from workbench._viewdoc import doc_from_journal

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
EXAMPLES: dict[str, dict[str, Any]] = {
    # name -> parameters (a script's become --name value): small, so CI stays fast
    "conversation.py": {"rounds": 1},
    "debate.py": {"turns": 2},
    "code_review.py": {},
    "research_team.py": {},
}
CELL_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Twice:
    """Two headless runs of the same notebook or script, each in its own copy of the tree."""

    codes: tuple[int, int]
    messages: tuple[str, str]
    hashes: tuple[list[str], list[str]]
    outputs: tuple[list[list[Any]], list[list[Any]]]
    views: list[tuple[str, int, int]]  # saved view: (journal, steps saved, steps journaled)
    report: Path | None  # the first run's report.html


def copy_tree(into: Path) -> Path:
    """notebooks/ and examples/ (without node_modules) as they sit in the repository."""
    shutil.copytree(ROOT / "notebooks", into / "notebooks",
                    ignore=shutil.ignore_patterns("runs", ".ipynb_checkpoints"))
    shutil.copytree(ROOT / "examples", into / "examples",
                    ignore=shutil.ignore_patterns("node_modules", "runs", "*.cwasm"))
    return into


def run_twice(tmp: Path, relative: str, parameters: dict[str, Any]) -> Twice:
    codes, messages, hashes, outputs, reports = [], [], [], [], []
    for attempt in ("a", "b"):
        tree = copy_tree(tmp / attempt)
        result = run_notebook(tree / relative, outdir=tmp / f"out-{attempt}",
                              parameters=parameters, timeout=CELL_TIMEOUT_S, progress=False)
        codes.append(result.code)
        messages.append(result.message)
        hashes.append([j.sha256 for j in result.journals])
        assert result.notebook is not None
        nb = nbformat.read(result.notebook, as_version=4)
        outputs.append(normalised_outputs(nb, [str(tree), str(tmp / f"out-{attempt}")]))
        views = saved_views(nb, {j.source.name: j.copy for j in result.journals})
        reports.append(result.report)
    return Twice((codes[0], codes[1]), (messages[0], messages[1]), (hashes[0], hashes[1]),
                 (outputs[0], outputs[1]), views, reports[0])


def saved_views(nb: Any, journals: dict[str, Path]) -> list[tuple[str, int, int]]:
    """The views saved in the notebook's widget state, each with the steps its document
    holds and the steps of the journal it names."""
    state = nb.metadata.get("widgets", {}).get(
        "application/vnd.jupyter.widget-state+json", {}).get("state", {})
    found = []
    for model in state.values():
        doc = model.get("state", {}).get("doc")
        if doc:
            journal = journals.get(doc["title"])
            expected = len(doc_from_journal(journal)["steps"]) if journal else -1
            found.append((doc["title"], len(doc["steps"]), expected))
    return found


@pytest.fixture(scope="module", params=NOTEBOOKS)
def notebook_runs(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Twice:
    return run_twice(tmp_path_factory.mktemp("nb"), f"notebooks/{request.param}", {})


@pytest.mark.model
def test_each_notebook_runs_headless(notebook_runs: Twice) -> None:
    assert notebook_runs.codes == (0, 0), notebook_runs.messages


@pytest.mark.model
def test_each_notebook_writes_the_same_journals_twice(notebook_runs: Twice) -> None:
    first, second = notebook_runs.hashes
    assert first and first == second


@pytest.mark.model
def test_each_notebook_saves_its_views_with_the_whole_run(notebook_runs: Twice) -> None:
    assert notebook_runs.views, "no view in the saved widget state"
    for title, saved, journaled in notebook_runs.views:
        assert journaled > 0 and saved == journaled, title


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium")) as context:
        yield context


@pytest.mark.model
def test_each_notebooks_report_renders_every_run_offline(notebook_runs: Twice,
                                                         browser: Any) -> None:
    assert notebook_runs.report is not None
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(notebook_runs.report.as_uri())
        page.wait_for_selector("body[data-wb-rendered]", timeout=15_000)
        sections = page.locator("section.wb-run")
        assert sections.count() == len(notebook_runs.hashes[0])
        for index in range(sections.count()):  # each run's graph has its nodes
            assert sections.nth(index).locator(".wb-node[data-agent]").count() > 0
        assert [u for u in requests if not u.startswith(("file:", "blob:", "data:"))] == []
    finally:
        page.close()


@pytest.mark.model
def test_each_notebook_prints_the_same_twice(notebook_runs: Twice) -> None:
    first, second = notebook_runs.outputs
    assert any(first), "the notebook printed nothing"
    assert first == second


@pytest.fixture(scope="module", params=sorted(EXAMPLES))
def example_runs(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Twice:
    return run_twice(tmp_path_factory.mktemp("ex"), f"examples/{request.param}",
                     EXAMPLES[request.param])


@pytest.mark.model
def test_each_example_runs_headless_twice_with_identical_journals(example_runs: Twice) -> None:
    assert example_runs.codes == (0, 0), example_runs.messages
    first, second = example_runs.hashes
    assert first and first == second
    assert any(example_runs.outputs[0]) and example_runs.outputs[0] == example_runs.outputs[1]


def test_the_notebooks_match_their_generator() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_notebooks.py"),
                           "--check"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_the_notebooks_are_stored_without_outputs() -> None:
    for name in NOTEBOOKS:
        nb = json.loads((ROOT / "notebooks" / name).read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), name
        assert sum("parameters" in c["metadata"].get("tags", []) for c in code) == 1, name


@pytest.mark.toolchain
def test_the_prebuilt_summarizer_is_built_from_its_source(tmp_path: Path) -> None:
    from workbench._wasm._build import build_agent

    agents = ROOT / "examples" / "agents"
    built = build_agent(agents / "summarizer.ts", tmp_path / "summarizer.wasm")
    assert built.read_bytes() == (agents / "prebuilt" / "summarizer.wasm").read_bytes(), (
        "examples/agents/prebuilt/summarizer.wasm is stale: rebuild it with `workbench "
        "build-agent examples/agents/summarizer.ts -o examples/agents/prebuilt/summarizer.wasm`")

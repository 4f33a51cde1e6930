"""`workbench run`: exit codes and messages, parameters, progress, run discovery, outputs."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from headless_helpers import write_notebook

from workbench import cli
from workbench._headless import (
    EXIT_CELL_FAILED,
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_KERNEL_DIED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    run_notebook,
)
from workbench._nbparams import parse_assignments
from workbench.errors import ConfigError

RUN_CELL = """\
import workbench as wb
from workbench.testing import FakeEngine

def agent(state, inbox, host):
    reply = host.infer({"prompt": str(topic), "max_tokens": 2})
    n = state["n"] + 1
    return {"state": {"n": n, "said": reply["text"]}, "outbox": [],
            "status": "done" if n >= steps else "ready"}

run = wb.Run(seed=seed, model=FakeEngine(), journal="runs/demo.wbj", overwrite=True)
run.add_agent("solo", agent, state={"n": 0})
summary = run.run()
run.close()
print("steps", summary.steps, "seed", repr(seed), "topic", repr(topic))
"""
PARAMS = ("parameters", "seed = 7\ntopic = 'sea'\nsteps: int = 2")


def workbench_run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["run", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_parameters_are_typed_and_runs_found(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    nb = write_notebook(tmp_path / "demo.ipynb", [("markdown", "# demo"), PARAMS, RUN_CELL])
    code, out, err = workbench_run(capsys, str(nb), "-o", str(tmp_path / "out"),
                                   "-p", "seed=3", "-p", "topic=tides", "-p", "steps=3")
    assert code == EXIT_OK, err
    executed = nbformat.read(tmp_path / "out" / "demo.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    assert printed == "steps 3 seed 3 topic 'tides'\n"
    injected = executed.cells[2]
    assert injected.metadata["tags"] == ["injected-parameters"]
    assert "seed = 3\ntopic = 'tides'\nsteps = 3" in injected.source
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["exit_code"] == 0
    assert [j["source"] for j in summary["journals"]] == [str(tmp_path / "runs" / "demo.wbj")]
    copy = tmp_path / "out" / summary["journals"][0]["copy"]
    assert copy.read_bytes() == (tmp_path / "runs" / "demo.wbj").read_bytes()
    trace = json.loads((tmp_path / "out" / summary["journals"][0]["trace"]).read_text())
    assert any(e.get("name") == "done" for e in trace["traceEvents"])
    assert (tmp_path / "out" / "report.html").is_file()
    assert f"report             {tmp_path / 'out' / 'report.html'}" in out
    # plain progress lines (not a terminal), one per code cell, markdown not counted
    assert "[1/3] cell 2: ok" in err and "[2/3] the injected parameters cell: ok" in err
    assert "[3/3] cell 3: ok" in err


def test_quoted_literals_and_bare_words(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    nb = write_notebook(tmp_path / "demo.ipynb", [PARAMS, RUN_CELL])
    code, _, err = workbench_run(capsys, str(nb), "-o", str(tmp_path / "out"),
                                 "-p", 'topic="3"', "-p", "seed=0x10")
    assert code == EXIT_OK, err
    executed = nbformat.read(tmp_path / "out" / "demo.ipynb", as_version=4)
    assert "seed 16 topic '3'" in executed.cells[-1].outputs[0]["text"]


def test_unknown_parameter_lists_the_notebooks(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    nb = write_notebook(tmp_path / "demo.ipynb", [PARAMS, RUN_CELL])
    code, _, err = workbench_run(capsys, str(nb), "-o", str(tmp_path / "out"),
                                 "-p", "sead=3")
    assert code == EXIT_USAGE
    assert "unknown parameter(s) sead: this notebook's parameters are seed, topic, steps" in err
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written
    bare = write_notebook(tmp_path / "bare.ipynb", ["x = 1"])
    code, _, err = workbench_run(capsys, str(bare), "-p", "x=2")
    assert code == EXIT_USAGE and "no code cell of this notebook is tagged 'parameters'" in err
    code, _, err = workbench_run(capsys, str(bare), "-p", "x")
    assert code == EXIT_USAGE and "is not NAME=VALUE" in err


def test_failing_cell_prints_number_source_traceback_and_keeps_partial_outputs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nb = write_notebook(tmp_path / "fails.ipynb", [
        PARAMS, RUN_CELL, "# the broken cell\nresult = {}['missing']", "print('never')"])
    code, out, err = workbench_run(capsys, str(nb), "-o", str(tmp_path / "out"))
    assert code == EXIT_CELL_FAILED
    assert "cell 3 failed:\n    # the broken cell\n    result = {}['missing']" in err
    assert "KeyError" in err and "Traceback" in err and "\x1b[" not in err
    assert "partial outputs of fails in" in out
    executed = nbformat.read(tmp_path / "out" / "fails.ipynb", as_version=4)
    assert executed.cells[1].outputs  # the cells before the failure kept their outputs
    assert executed.cells[3].outputs == []
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["exit_code"] == EXIT_CELL_FAILED and len(summary["journals"]) == 1


def test_timeout_has_its_own_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nb = write_notebook(tmp_path / "slow.ipynb", ["x = 1", "import time\ntime.sleep(60)"])
    code, _, err = workbench_run(capsys, str(nb), "-o", str(tmp_path / "out"),
                                 "--timeout", "2")
    assert code == EXIT_TIMEOUT
    assert "cell 2 ran past the time limit of 2.0 s (--timeout):\n    import time" in err


def test_killed_kernel_has_its_own_code(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    nb = write_notebook(tmp_path / "dies.ipynb", [
        "x = 1", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "print(x)"])
    code, _, err = workbench_run(capsys, str(nb), "-o", str(tmp_path / "out"))
    assert code == EXIT_KERNEL_DIED
    assert "the kernel died while running cell 2" in err
    assert (tmp_path / "out" / "dies.ipynb").is_file()


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = workbench_run(capsys, str(tmp_path / "missing.ipynb"))
    assert code == EXIT_USAGE and "no notebook at" in err
    nb = write_notebook(tmp_path / "ok.ipynb", ["x = 1"])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    code, _, err = workbench_run(capsys, str(nb), "-o", str(tmp_path / "mine"))
    assert code == EXIT_USAGE and "has files that `workbench run` did not write" in err
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"
    code, _, err = workbench_run(capsys, str(nb), "--kernel", "no-such-kernel", "-o", "k")
    assert code == EXIT_USAGE and "no kernel named 'no-such-kernel'" in err
    assert not Path("k").exists()


def test_rerun_into_the_same_outdir_replaces_its_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nb = write_notebook(tmp_path / "demo.ipynb", [PARAMS, RUN_CELL])
    assert workbench_run(capsys, str(nb), "-o", "out")[0] == EXIT_OK
    first = json.loads(Path("out/summary.json").read_text())
    nb2 = write_notebook(tmp_path / "demo.ipynb", [PARAMS, "x = 1"])  # no runs now
    assert workbench_run(capsys, str(nb2), "-o", "out")[0] == EXIT_OK
    assert first["journals"] and json.loads(Path("out/summary.json").read_text())["journals"] == []
    assert not Path("out/runs").exists()


def test_a_script_runs_with_parameters_as_arguments(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "job.py"
    script.write_text("import argparse, sys\n"
                      "p = argparse.ArgumentParser()\n"
                      "p.add_argument('--rounds', type=int, default=1)\n"
                      "args = p.parse_args()\n"
                      "print('rounds', args.rounds, 'main', __name__)\n"
                      "if args.rounds > 5:\n"
                      "    sys.exit(3)\n")
    code, _, err = workbench_run(capsys, str(script), "-o", "out", "-p", "rounds=4", "--echo")
    assert code == EXIT_OK, err
    assert "rounds 4 main __main__" in err  # --echo
    code, _, err = workbench_run(capsys, str(script), "-o", "out", "-p", "rounds=9")
    assert code == EXIT_CELL_FAILED and "SystemExit: 3" in err


def test_progress_is_a_bar_on_a_terminal(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "two.ipynb", ["x = 1", "y = 2"])
    stream = io.StringIO()
    result = run_notebook(nb, outdir=tmp_path / "out", progress=True, stream=stream)
    assert result.code == EXIT_OK
    text = stream.getvalue()
    assert "2/2" in text and "\r" in text  # tqdm redraws one line
    assert "[1/2]" not in text  # not the plain lines


def test_parameter_values_are_read_as_literals() -> None:
    values = parse_assignments(["a=3", "b=2.5", "c=True", "d=[1, 'x']", "e=tides",
                                "f='3'", "g=a b", "h=1e999", "i=None", "j="])
    assert values == {"a": 3, "b": 2.5, "c": True, "d": [1, "x"], "e": "tides", "f": "3",
                      "g": "a b", "h": "1e999", "i": None, "j": ""}
    with pytest.raises(ConfigError, match="given twice"):
        parse_assignments(["a=1", "a=2"])
    with pytest.raises(ConfigError, match="not NAME=VALUE"):
        parse_assignments(["1a=2"])


def test_an_interrupt_has_its_own_code_and_keeps_partial_outputs(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    nb = write_notebook(tmp_path / "long.ipynb", [
        "x = 1", f"import pathlib, time\npathlib.Path({str(marker)!r}).touch()\ntime.sleep(60)"])
    workbench = Path(sys.executable).parent / "workbench"
    proc = subprocess.Popen([str(workbench), "run", str(nb), "-o", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # the second cell is running once the marker exists (<= 60 s)
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert marker.exists()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "interrupted (SIGINT or SIGTERM) during cell 2" in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["exit_code"] == EXIT_INTERRUPTED
    executed = nbformat.read(tmp_path / "out" / "long.ipynb", as_version=4)
    assert executed.cells[0].execution_count == 1


def test_help_lists_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = capsys.readouterr().out
    for code, meaning in EXIT_CODES.items():
        assert re.search(rf"^\s+{code}\s+{re.escape(meaning[:30])}", text, re.MULTILINE), code


def test_the_kernel_starts_in_the_notebooks_folder_or_cwd(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "nbs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    nb = write_notebook(tmp_path / "nbs" / "where.ipynb", ["import os\nprint(os.getcwd())"])
    for extra, expected in (([], tmp_path / "nbs"),
                            (["--cwd", str(tmp_path / "elsewhere")], tmp_path / "elsewhere")):
        out = tmp_path / f"out-{expected.name}"
        assert workbench_run(capsys, str(nb), "-o", str(out), *extra)[0] == EXIT_OK
        executed = nbformat.read(out / "where.ipynb", as_version=4)
        assert executed.cells[0].outputs[0]["text"] == f"{expected}\n"

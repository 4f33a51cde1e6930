"""``workbench run NOTEBOOK``: execute a notebook (or a script) headless, with nbclient.

What it does, in order:

1. Read the notebook (``.ipynb``; a ``.py`` script becomes a one-cell notebook that runs it
   as ``python SCRIPT --name value ...``) and inject ``-p`` parameters after the cell tagged
   ``parameters`` (:mod:`workbench._nbparams`).
2. Start a kernel (``--kernel``, default ``python3``) in the notebook's folder (``--cwd``)
   with ``WORKBENCH_RUN_LOG`` set, so every run the notebook creates names its journal
   (:mod:`workbench._runlog`), and run every code cell with a per-cell time limit, showing
   progress per cell: a bar on a terminal, one plain line per cell otherwise.
3. Write into OUTDIR, whatever happened: the executed notebook with its widget state
   (partial after a failure), each journal the runs wrote (with the WebAssembly modules kept
   beside it) and its Perfetto trace under ``runs/NN-NAME/``, one ``report.html`` covering
   all of them, and ``summary.json`` (the exit code, the cells, the journals and their
   SHA-256).

Exit codes (:data:`EXIT_CODES`): 0 every cell ran; 1 a cell raised; 2 usage (bad arguments,
unknown parameter, no such notebook or kernel, OUTDIR not ours); 3 a cell ran past its time
limit; 4 the kernel died; 5 the notebook ran but its journals, traces or report could not be
written; 130 interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from workbench._nbparams import inject_parameters, nbformat_module, parse_assignments
from workbench._runlog import RUN_LOG_ENV, read_run_log
from workbench.errors import ConfigError, WorkbenchError

EXIT_OK = 0
EXIT_CELL_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_KERNEL_DIED = 4
EXIT_OUTPUTS = 5
EXIT_INTERRUPTED = 130
EXIT_CODES = {
    EXIT_OK: "every cell ran",
    EXIT_CELL_FAILED: "a cell raised an error (its number, source and traceback are printed)",
    EXIT_USAGE: "usage: bad arguments, unknown parameter, no such notebook or kernel",
    EXIT_TIMEOUT: "a cell ran longer than --timeout seconds",
    EXIT_KERNEL_DIED: "the kernel died (killed, crashed, out of memory) or did not start",
    EXIT_OUTPUTS: "the notebook ran, but its journals, traces or report could not be written",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

DEFAULT_TIMEOUT_S = 600.0
STARTUP_TIMEOUT_S = 120.0
SUMMARY = "summary.json"
KERNEL_LOG = "kernel.log"
"""In OUTDIR: what the kernel process itself wrote to stderr (not the cells' output)."""
MAX_JOURNALS = 1_000
"""The most journals one headless run collects (see :data:`workbench._runlog.MAX_RUN_LOG_LINES`)."""
SOURCE_HEAD_LINES = 6
MAX_ECHO_CHARS = 20_000
"""Per cell, at most this much of its printed text is echoed on the terminal (``--echo``)."""

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class JournalOutput:
    """One journal a run of the notebook wrote, as copied into OUTDIR."""

    source: Path
    copy: Path
    trace: Path | None
    sha256: str


@dataclass
class HeadlessResult:
    """What :func:`run_notebook` did: the exit code, a message when it is not 0, and the
    files it wrote (``notebook`` is None only when execution never started)."""

    code: int
    message: str = ""
    notebook: Path | None = None
    journals: list[JournalOutput] = field(default_factory=list)
    report: Path | None = None
    summary: Path | None = None
    seconds: float = 0.0
    execution_seconds: float = 0.0  # the kernel's start, the cells and its shutdown
    outputs_seconds: float = 0.0  # copying journals, traces, the report


@dataclass(frozen=True)
class _Cell:
    """How to name a cell of the executed notebook to a person."""

    label: str
    head: str


def run_notebook(source: str | os.PathLike[str], *, outdir: str | os.PathLike[str] | None = None,
                 parameters: Mapping[str, Any] | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT_S, kernel: str = "python3",
                 cwd: str | os.PathLike[str] | None = None, progress: bool | None = None,
                 echo: bool = False, stream: TextIO | None = None) -> HeadlessResult:
    """Execute ``source`` headless and write its outputs into ``outdir``; see the module
    docstring. Never raises for a failing notebook: the outcome is the result's ``code``.

    ``timeout``: seconds per cell (None: no limit). ``progress``: a bar (True), plain lines
    (False) or, None, a bar only when ``stream`` is a terminal. ``echo``: print what each
    cell prints. ``stream``: where progress and messages go (default stderr).
    """
    out = stream if stream is not None else sys.stderr
    started = time.monotonic()
    path = Path(source)
    try:
        nb, cells = _load(path, dict(parameters or {}))
        _check_kernel(kernel)
        target = _prepare_outdir(Path(outdir) if outdir is not None
                                 else Path("runs") / path.stem)
        workdir = Path(cwd) if cwd is not None else path.resolve().parent
        if not workdir.is_dir():
            raise ConfigError(f"--cwd {workdir} is not a folder")
    except WorkbenchError as exc:
        return HeadlessResult(EXIT_USAGE, str(exc))
    result = _execute(nb, cells, path, target, workdir, timeout=timeout, kernel=kernel,
                      bar=out.isatty() if progress is None else progress, echo=echo, out=out)
    result.seconds = time.monotonic() - started
    result.summary = _write_summary(target, path, result)
    return result


def _check_kernel(name: str) -> None:
    """ConfigError unless a Jupyter kernel ``name`` is installed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel as exc:
        raise ConfigError(f"no kernel named {name!r}; see `jupyter kernelspec list`") from exc


def _load(path: Path, parameters: dict[str, Any]) -> tuple[Any, list[_Cell]]:
    nbformat = nbformat_module()
    if not path.is_file():
        raise ConfigError(f"no notebook at {path}")
    if path.suffix == ".py":
        nb = _script_notebook(path, parameters)
        return nb, [_Cell(f"script {path.name}", _head(nb.cells[0].source))]
    if path.suffix != ".ipynb":
        raise ConfigError(f"{path} is neither a notebook (.ipynb) nor a script (.py)")
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the notebook {path}: {exc}") from exc
    injected = inject_parameters(nb, parameters)
    return nb, _cell_labels(nb, injected)


def _script_notebook(path: Path, parameters: Mapping[str, Any]) -> Any:
    """A one-cell notebook that runs ``path`` as ``python path --name value ...`` would."""
    nbformat = nbformat_module()
    argv = [str(path.resolve())]
    for name, value in parameters.items():
        argv += [f"--{name.replace('_', '-')}", value if isinstance(value, str) else str(value)]
    code = "\n".join([
        "# workbench run: this script, as `python SCRIPT ARGS` runs it",
        "import runpy as _runpy, sys as _sys",
        f"_sys.argv = {argv!r}",
        f"_sys.path.insert(0, {str(path.resolve().parent)!r})",
        "try:",
        f"    _runpy.run_path({argv[0]!r}, run_name='__main__')",
        "except SystemExit as _exit:",
        "    if _exit.code not in (None, 0):",
        "        raise",
    ])
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(code))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


def _cell_labels(nb: Any, injected: int | None) -> list[_Cell]:
    """Cells named by their number in the notebook as written (the injected one aside)."""
    labels = []
    for index, cell in enumerate(nb.cells):
        number = index + 1 - (injected is not None and index > injected)
        label = ("the injected parameters cell" if index == injected
                 else f"cell {number}")
        labels.append(_Cell(label, _head(cell.source)))
    return labels


def _head(source: str | list[str]) -> str:
    text = "".join(source) if isinstance(source, list) else source
    lines = text.splitlines()
    head = lines[:SOURCE_HEAD_LINES]
    if len(lines) > SOURCE_HEAD_LINES:
        head.append(f"... ({len(lines) - SOURCE_HEAD_LINES} more lines)")
    return "\n".join("    " + line for line in head)


def _prepare_outdir(target: Path) -> Path:
    """Create ``target``, or clear what an earlier ``workbench run`` wrote there. A folder
    with other files and no ``summary.json`` is refused (ConfigError): nothing of the
    user's is deleted."""
    if target.exists() and not target.is_dir():
        raise ConfigError(f"the output folder {target} is a file")
    if target.is_dir() and any(target.iterdir()):
        if not (target / SUMMARY).is_file():
            raise ConfigError(f"the output folder {target} has files that `workbench run` did "
                              "not write; pass -o with a new or empty folder")
        shutil.rmtree(target / "runs", ignore_errors=True)
        for stale in target.glob("*"):
            if stale.is_file() and stale.suffix in (".ipynb", ".html", ".json", ".log"):
                stale.unlink()
    target.mkdir(parents=True, exist_ok=True)
    return target


def _execute(nb: Any, cells: list[_Cell], path: Path, target: Path, workdir: Path, *,
             timeout: float | None, kernel: str, bar: bool, echo: bool,
             out: TextIO) -> HeadlessResult:
    nbformat = nbformat_module()
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    code_cells = sum(c.get("cell_type") == "code" for c in nb.cells)
    progress = _Progress(cells, code_cells, bar=bar, echo=echo, out=out)
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel,
                            startup_timeout=STARTUP_TIMEOUT_S, store_widget_state=True,
                            coalesce_streams=True,  # one stdout output however it was flushed
                            on_cell_start=progress.start, on_cell_executed=progress.done)
    with tempfile.TemporaryDirectory(prefix="workbench-run-") as tmp:
        log = Path(tmp) / "runs.jsonl"
        env = {**os.environ, RUN_LOG_ENV: str(log)}
        code, message = EXIT_OK, ""
        started = time.monotonic()
        try:
            with (target / KERNEL_LOG).open("wb") as kernel_log:
                client.execute(cwd=str(workdir), env=env, stderr=kernel_log)
        except CellTimeoutError:
            code, message = EXIT_TIMEOUT, (
                f"{progress.current_label()} ran past the time limit of {timeout} s "
                f"(--timeout):\n{progress.current_head()}")
        except CellExecutionError:
            code, message = EXIT_CELL_FAILED, progress.failure(nb)
        except (DeadKernelError, AssertionError) as exc:
            if _interrupted(client):
                code, message = EXIT_INTERRUPTED, (
                    f"interrupted (SIGINT or SIGTERM) during {progress.current_label()}; the "
                    "kernel was shut down")
            else:
                code, message = EXIT_KERNEL_DIED, (
                    f"the kernel died while running {progress.current_label()} ({exc}); its "
                    f"own messages are in {target / KERNEL_LOG}:\n{progress.current_head()}")
        except NoSuchKernel as exc:
            return HeadlessResult(EXIT_USAGE, f"no kernel named {kernel!r} ({exc}); see "
                                              "`jupyter kernelspec list`")
        except KeyboardInterrupt:
            code, message = EXIT_INTERRUPTED, "interrupted"
        except RuntimeError as exc:  # the kernel did not start or answer
            code, message = EXIT_KERNEL_DIED, f"the kernel failed: {exc}"
        finally:
            progress.close()
        if code != EXIT_OK:
            client.set_widgets_metadata()  # keep what the views showed until then
        executed = time.monotonic()
        notebook = target / (path.stem + ".ipynb")
        nbformat.write(nb, notebook)
        result = HeadlessResult(code, message, notebook)
        _collect(read_run_log(log)[:MAX_JOURNALS], target, result, path.stem)
        result.execution_seconds = executed - started
        result.outputs_seconds = time.monotonic() - executed
    return result


def _interrupted(client: Any) -> bool:
    """Whether nbclient shut the kernel down on SIGINT/SIGTERM. Its signal handler replaces
    Python's KeyboardInterrupt while cells run and leaves this future behind; the kernel then
    looks dead (DeadKernelError), or nbclient's second cleanup fails an assertion."""
    return getattr(client, "_async_cleanup_kernel_future", None) is not None


class _Progress:
    """Per-cell progress: a tqdm bar (on a terminal) or one plain line per cell."""

    def __init__(self, cells: list[_Cell], code_cells: int, *, bar: bool, echo: bool,
                 out: TextIO) -> None:
        from tqdm import tqdm

        self._cells = cells
        self._out = out
        self._echo = echo
        self._index = -1
        self._started = 0.0
        self._total = code_cells
        self._done = 0
        self._bar = tqdm(total=code_cells, unit="cell", file=out, leave=True,
                         dynamic_ncols=True) if bar else None

    def start(self, cell: Any, cell_index: int) -> None:
        self._index = cell_index
        self._started = time.monotonic()
        if self._bar is not None:
            self._bar.set_description(self._cells[cell_index].label)

    def done(self, cell: Any, cell_index: int, execute_reply: Any) -> None:
        seconds = time.monotonic() - self._started
        status = (execute_reply or {}).get("content", {}).get("status", "ok")
        self._done += 1
        line = (f"[{self._done}/{self._total}] {self._cells[cell_index].label}: "
                f"{'ok' if status == 'ok' else status} ({seconds:.1f} s)")
        if self._bar is not None:
            self._bar.update(1)
        else:
            self._write(line)
        if self._echo:  # what the cell printed, after the line that names it
            self._write(_printed(cell))

    def _write(self, text: str) -> None:
        if not text:
            return
        if self._bar is not None:
            self._bar.write(text.rstrip("\n"), file=self._out)
        else:
            print(text.rstrip("\n"), file=self._out, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def current_label(self) -> str:
        return self._cells[self._index].label if self._index >= 0 else "the kernel start"

    def current_head(self) -> str:
        return self._cells[self._index].head if self._index >= 0 else ""

    def failure(self, nb: Any) -> str:
        """The failing cell's number, source head and traceback, as plain text."""
        cell = nb.cells[self._index] if self._index >= 0 else {"outputs": []}
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        trace = ("\n".join(_ANSI.sub("", line) for line in errors[-1].get("traceback", []))
                 if errors else "(no traceback)")
        return f"{self.current_label()} failed:\n{self.current_head()}\n{trace}"


def _printed(cell: Any) -> str:
    """What a cell printed (its stream outputs and plain-text results), cut to a bound."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(str(output.get("text", "")))
        elif output.get("output_type") == "execute_result":
            parts.append(str(output.get("data", {}).get("text/plain", "")) + "\n")
    text = "".join(parts)
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS] + "\n[... cut]\n"


def _collect(journals: Sequence[Path], target: Path, result: HeadlessResult, title: str) -> None:
    """Copy each journal (and its kept modules) into ``target/runs``, export its trace, and
    write one report for them all. Failures here set EXIT_OUTPUTS unless the run had
    already failed (its code wins; the message says both)."""
    from workbench._export import export_trace

    problems: list[str] = []
    for number, journal in enumerate(journals, 1):
        if not journal.is_file():
            problems.append(f"journal {journal} was created but is gone")
            continue
        folder = target / "runs" / _run_folder_name(number, journal)
        copy = _copy_journal(journal, folder)
        trace: Path | None = folder / "trace.json"
        try:
            export_trace(copy, folder / "trace.json")
        except Exception as exc:  # any failure here is reported, never a crash
            problems.append(f"no trace for {journal}: {type(exc).__name__}: {exc}")
            trace = None
        digest = hashlib.sha256(copy.read_bytes()).hexdigest()
        result.journals.append(JournalOutput(journal, copy, trace, digest))
    copies = [j.copy for j in result.journals]
    try:
        from workbench._report import write_report

        result.report = write_report(copies, target / "report.html", title=title,
                                     names=[j.source.name for j in result.journals])
    except Exception as exc:  # any failure here is reported, never a crash
        problems.append(f"no report: {type(exc).__name__}: {exc}")
    if problems:
        note = "outputs incomplete: " + "; ".join(problems)
        result.message = f"{result.message}\n{note}".strip()
        if result.code == EXIT_OK:
            result.code = EXIT_OUTPUTS


def _run_folder_name(number: int, journal: Path) -> str:
    """``NN-NAME``: the journal's stem, or its folder's name for a default ``journal.wbj``."""
    stem = journal.parent.name if journal.stem == "journal" else journal.stem
    return f"{number:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', stem)[:60] or 'run'}"


def _copy_journal(journal: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / "journal.wbj"
    shutil.copyfile(journal, copy)
    modules = journal.parent / "modules"
    if modules.is_dir():
        shutil.copytree(modules, folder / "modules", dirs_exist_ok=True)
    return copy


def _write_summary(target: Path, source: Path, result: HeadlessResult) -> Path:
    summary = {
        "notebook": str(source), "exit_code": result.code,
        "outcome": EXIT_CODES.get(result.code, "unknown"), "message": result.message,
        "executed": result.notebook.name if result.notebook else None,
        "report": result.report.name if result.report else None,
        "journals": [{"source": str(j.source), "copy": str(j.copy.relative_to(target)),
                      "trace": str(j.trace.relative_to(target)) if j.trace else None,
                      "sha256": j.sha256} for j in result.journals],
        "seconds": round(result.seconds, 3),
        "execution_seconds": round(result.execution_seconds, 3),
        "outputs_seconds": round(result.outputs_seconds, 3),
    }
    path = target / SUMMARY
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return path



# -- the command ------------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``workbench run``."""
    codes = "\n".join(f"  {code:>3}  {what}" for code, what in EXIT_CODES.items())
    p = sub.add_parser(
        "run", help="execute a notebook (or script) headless; write its outputs and a report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Execute NOTEBOOK with a Jupyter kernel, no browser. OUTDIR receives the "
                    "executed notebook (widget state embedded), every journal its runs wrote "
                    "with a Perfetto trace each (runs/NN-NAME/), report.html and "
                    "summary.json.",
        epilog=f"exit codes:\n{codes}")
    p.add_argument("notebook", help="a .ipynb notebook, or a .py script (run as `python "
                                    "SCRIPT --name value ...` for each -p)")
    p.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                   help="set a parameter of the cell tagged `parameters`; VALUE is read as a "
                        "Python literal (3, 2.5, True, [1, 2], \"text\"), else as text")
    p.add_argument("-o", "--output", default=None, metavar="OUTDIR",
                   help="output folder (default: runs/NOTEBOOK_NAME); a folder with other "
                        "files is refused")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"seconds each cell may run (default {DEFAULT_TIMEOUT_S:g}; 0: no "
                        "limit)")
    p.add_argument("--kernel", default="python3", metavar="NAME",
                   help="Jupyter kernel to run it with (default python3)")
    p.add_argument("--cwd", default=None, metavar="DIR",
                   help="the kernel's working folder (default: the notebook's folder, as in "
                        "JupyterLab)")
    p.add_argument("--echo", action="store_true",
                   help="print what each cell prints on the terminal")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    try:
        values = parse_assignments(args.parameter)
    except ConfigError as exc:
        print(f"workbench run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    result = run_notebook(args.notebook, outdir=args.output, parameters=values,
                          timeout=args.timeout if args.timeout > 0 else None,
                          kernel=args.kernel, cwd=args.cwd, echo=args.echo)
    if result.message:
        print(f"workbench run: {result.message}", file=sys.stderr)
    _print_outputs(result)
    return result.code


def _print_outputs(result: HeadlessResult) -> None:
    if result.notebook is None:
        return
    verb = "ran" if result.code == EXIT_OK else "partial outputs of"
    print(f"{verb} {result.notebook.stem} in {result.seconds:.1f} s "
          f"(exit {result.code}: {EXIT_CODES.get(result.code, '?')})")
    print(f"  executed notebook  {result.notebook}")
    for j in result.journals:
        print(f"  journal            {j.copy}")
        if j.trace is not None:
            print(f"  trace              {j.trace}  (open in ui.perfetto.dev)")
    if result.report is not None:
        print(f"  report             {result.report}")

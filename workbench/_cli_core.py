"""Core sub-commands: ``replay``, ``inspect`` and ``doctor``."""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from workbench._records import AgentResult, Call, Commit, Record, RunHeader
from workbench.errors import WorkbenchError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="re-execute a journal and verify every event")
    p.add_argument("journal", help="path of a journal file (journal.wbj)")
    p.set_defaults(func=_replay)
    p = sub.add_parser("inspect", help="summarise a journal as a table")
    p.add_argument("journal")
    p.set_defaults(func=_inspect)
    p = sub.add_parser("doctor", help="versions, execution providers and toolchains found")
    p.set_defaults(func=_doctor)


def _replay(args: argparse.Namespace) -> int:
    from workbench._replay import replay

    try:
        report = replay(args.journal)
    except WorkbenchError as exc:
        print(f"replay failed: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {report.steps} steps, {report.records} records verified")
    if report.changed_agents:
        print(f"note: code changed but output identical for {report.changed_agents}")
    return 0


def summarize(records: Sequence[Record]) -> list[list[str]]:
    """Rows of (agent, kind, steps, messages, infer calls, tokens, faults)."""
    header = records[0] if records and isinstance(records[0], RunHeader) else None
    agents = header.agents if header is not None else ()
    stats: dict[str, collections.Counter[str]] = {a.name: collections.Counter() for a in agents}
    faults: dict[str, list[str]] = collections.defaultdict(list)
    for r in records:
        if isinstance(r, AgentResult):
            c = stats.setdefault(r.agent, collections.Counter())
            c["steps"] += 1
            c["messages"] += len(r.outbox)
            if r.fault:
                faults[r.agent].append(f"{r.fault['kind']}@{r.step}")
        elif isinstance(r, Call) and r.fn == "infer":
            c = stats.setdefault(r.agent, collections.Counter())
            c["infer"] += 1
            res = r.result if isinstance(r.result, dict) else {}
            tokens = res.get("tokens")
            c["tokens"] += len(tokens) if isinstance(tokens, list) else 0
    kinds = {a.name: str(a.identity["kind"]) for a in agents}
    rows = [["agent", "kind", "steps", "messages", "infer", "tokens", "faults"]]
    for name, c in stats.items():
        rows.append([name, kinds.get(name, "?"), str(c["steps"]), str(c["messages"]),
                     str(c["infer"]), str(c["tokens"]), ", ".join(faults[name][:3]) or "-"])
    return rows


def _inspect(args: argparse.Namespace) -> int:
    from workbench._journal import read_journal

    try:
        journal = read_journal(args.journal)
        records = journal.typed
    except WorkbenchError as exc:
        print(f"cannot read journal: {exc}", file=sys.stderr)
        return 1
    if not records or not isinstance(records[0], RunHeader):
        print("not a run journal: the first record is not a run header", file=sys.stderr)
        return 1
    h = records[0]
    steps = sum(1 for r in records if isinstance(r, Commit))
    engine: Mapping[str, Any] = h.engine or {}
    print(f"journal  {journal.path}  ({journal.end} bytes, {len(records)} records)")
    print(f"seed {h.seed}  policy {h.policy.get('name')}  steps {steps}  "
          f"model {engine.get('model', '-')}  provider {engine.get('provider', '-')}")
    cpu = engine.get("cpu")
    if isinstance(cpu, dict):
        print(f"cpu {cpu.get('arch', '?')}  kernel path {cpu.get('isa', '?')}  "
              f"features {' '.join(cpu.get('features', [])) or '-'}")
    if h.parent:
        print(f"forked from {h.parent.get('journal')} at step {h.parent.get('step')}")
    if journal.torn_bytes:
        print(f"torn tail: {journal.torn_bytes} bytes dropped (a crash while writing)")
    print(_table(summarize(records)))
    return 0


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _doctor(args: argparse.Namespace) -> int:
    import workbench

    print(f"workbench {workbench.__version__}  python {platform.python_version()}  "
          f"{platform.system()} {platform.machine()}")
    for module in ("wasmtime", "onnxruntime", "onnx", "gguf", "tokenizers", "numpy"):
        try:
            print(f"  {module:12} {importlib.metadata.version(module)}")
        except importlib.metadata.PackageNotFoundError:
            print(f"  {module:12} MISSING - pip install {module}")
    try:
        import onnxruntime as ort

        print(f"  providers    listed: {', '.join(ort.get_available_providers())}")
        print(f"  device       {ort.get_device()}")
    except ImportError:
        pass
    from workbench._engine._cpu import cpu_info

    cpu = cpu_info()
    features = cpu["features"] if isinstance(cpu["features"], list) else []
    print(f"  cpu          {cpu['arch']}: {' '.join(map(str, features)) or '-'}")
    print(f"  cpu kernels  onnxruntime (MLAS) path {cpu['isa']}")
    from workbench._wasm._build import toolchains

    for language, found in toolchains(Path("examples/agents")).items():
        print(f"  {language:14} {found}")
    return 0

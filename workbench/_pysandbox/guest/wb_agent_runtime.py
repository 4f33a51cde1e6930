# mypy: ignore-errors
# (Guest code: it runs on the component's CPython against bindings componentize-py generates
# at build time, so the kernel's type checker cannot see what it imports.)
"""The guest side of sandboxed Python agents: the app componentize-py builds into the runtime.

This file runs inside WebAssembly, never in the kernel. It is imported once, at build time
(componentize-py snapshots the interpreter after that import), so every module an agent may
import is imported here and lives in the snapshot. Every step then runs in a fresh instance
of that snapshot. When an agent is loaded the host calls ``prepare(agent)`` with its package
(its source as data) and keeps the compiled code it returns; each step it calls
``step(agent, code, input)`` with the ABI v1 step input and gets the ABI v1 output or a fault.

What an agent sees: the modules of ALLOWED (``random`` and ``time`` answered by the host's
seeded calls), builtins without ``open``/``input``/``breakpoint`` and with an import that
refuses everything else, and a ``host`` object with the granted host calls. The component
imports no WASI at all (built with ``--stub-wasi``): a way around these Python-level fences
reaches a stub that traps, which the host reports as a ``sandbox_denied`` trap.
"""

import base64
import bisect
import builtins
import collections
import copy
import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import gc
import hashlib
import heapq
import itertools
import json
import linecache
import marshal
import math
import operator
import os
import random as _stdlib_random
import re
import statistics
import string
import sys
import textwrap
import time as _stdlib_time
import traceback
import types
import typing

import componentize_py_types
import wit_world
from wit_world.imports import host as _host

# --- the snapshot: no file system, no environment, no path to import from ----------------------

os.environ.clear()
sys.path[:] = []
sys.path_hooks[:] = []
sys.path_importer_cache.clear()
linecache.checkcache = lambda filename=None: None
linecache.updatecache = lambda filename, module_globals=None: []
linecache.clearcache()


class _Discard:
    """stdout and stderr: writing to the stubbed WASI streams would trap."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass


sys.stdout = sys.stderr = _Discard()
gc.freeze()  # the snapshot's objects: never traversed by a step's collections

AGENT_FILE = "<agent>"
"""The file name agent code is compiled under: its frames are the agent's own."""

_PLAIN = {
    "base64": base64, "bisect": bisect, "collections": collections, "copy": copy,
    "dataclasses": dataclasses, "datetime": datetime, "decimal": decimal, "enum": enum,
    "fractions": fractions, "functools": functools, "hashlib": hashlib, "heapq": heapq,
    "itertools": itertools, "json": json, "math": math, "operator": operator, "re": re,
    "statistics": statistics, "string": string, "textwrap": textwrap, "types": types,
    "typing": typing,
}
ALLOWED = tuple(sorted([*_PLAIN, "random", "time"]))
"""The modules an agent may import (docs/python-agents.md lists them)."""


# --- host calls --------------------------------------------------------------------------------


class Host:
    """The ``host`` argument of a step: the granted host calls, as in the in-process agent."""

    def __init__(self, granted):
        self._granted = frozenset(granted)

    def _check(self, name):
        if name not in self._granted:
            raise PermissionError(f"host.{name} is not granted to this agent; add {name!r} to "
                         "capabilities=[...] in run.add_agent")

    def infer(self, request):
        self._check("infer")
        reply = json.loads(_host.infer(json.dumps(request, ensure_ascii=False,
                                                  allow_nan=False)))
        if isinstance(reply, dict) and set(reply) == {"error"}:
            raise ValueError(reply["error"])
        return reply

    def log(self, text):
        self._check("log")
        _host.log(text if isinstance(text, str) else str(text))

    def random(self):
        self._check("random")
        return _host.random()

    def now(self):
        self._check("now")
        return _host.now()


class _HostRandom(_stdlib_random.Random):
    """``random.Random`` seeded on first use from ``host.random()`` (seeded by the run)."""

    def __init__(self, host):
        self._wb_host = host
        super().__init__(0)
        self._wb_seeded = False  # __init__ seeded it with 0: draw the real seed on first use

    def _wb_seed(self):
        if not self._wb_seeded:
            self._wb_seeded = True
            super().seed(self._wb_host.random())

    def seed(self, a=None, version=2):
        if a is None:
            self._wb_seeded = False
            return
        self._wb_seeded = True
        super().seed(a, version)

    def random(self):
        self._wb_seed()
        return super().random()

    def getrandbits(self, k):
        self._wb_seed()
        return super().getrandbits(k)


_RANDOM_API = ("betavariate", "binomialvariate", "choice", "choices", "expovariate",
               "gammavariate", "gauss", "getrandbits", "getstate", "lognormvariate",
               "normalvariate", "paretovariate", "randbytes", "randint", "random", "randrange",
               "sample", "seed", "setstate", "shuffle", "triangular", "uniform",
               "vonmisesvariate", "weibullvariate")


def _random_module(host):
    module = types.ModuleType("random", "random, drawing from the host's seeded host.random()")
    instance = _HostRandom(host)
    for name in _RANDOM_API:
        if hasattr(instance, name):
            setattr(module, name, getattr(instance, name))
    module.Random = _stdlib_random.Random
    return module


def _time_module(host):
    module = types.ModuleType("time", "time, answered by the host's logical host.now()")

    def time_ns():
        return host.now()

    def time():
        return host.now() / 1e9

    def sleep(seconds):
        raise PermissionError("time.sleep: a sandboxed agent cannot sleep; return status 'ready' "
                     "and continue next step")

    def gmtime(secs=None):
        return _stdlib_time.gmtime(time() if secs is None else secs)

    def strftime(fmt, t=None):
        return _stdlib_time.strftime(fmt, gmtime() if t is None else t)

    for name, fn in (("time", time), ("time_ns", time_ns), ("monotonic", time),
                     ("monotonic_ns", time_ns), ("perf_counter", time),
                     ("perf_counter_ns", time_ns), ("sleep", sleep), ("gmtime", gmtime),
                     ("localtime", gmtime), ("strftime", strftime)):
        setattr(module, name, fn)
    module.struct_time = _stdlib_time.struct_time
    return module


# --- the agent's namespace -------------------------------------------------------------------


def _builtins(modules, host):
    table = dict(vars(builtins))

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        top = name.partition(".")[0]
        if level != 0 or top not in modules:
            raise ImportError(f"module {name!r} is not available in the sandbox; it has "
                              f"{', '.join(ALLOWED)}", name=name)
        module = modules[top]
        if fromlist or name == top:
            return _submodule(module, name) if fromlist else module
        return module

    def denied(what, advice):
        def refuse(*args, **kwargs):
            raise PermissionError(f"{what} is not available in the sandbox; {advice}")
        return refuse

    def sandbox_print(*args, sep=" ", end="\n", file=None, flush=False):
        if "log" in host._granted:
            host.log((sep if sep is not None else " ").join(map(str, args)))

    table.update(
        __import__=guarded_import, print=sandbox_print,
        open=denied("open()", "there is no file system; pass data in messages or state"),
        input=denied("input()", "there is no console"),
        breakpoint=denied("breakpoint()", "debug the agent in-process (sandbox=False)"),
        exit=denied("exit()", "return status 'done' instead"),
        quit=denied("quit()", "return status 'done' instead"),
        help=denied("help()", "read the docs in the kernel"),
    )
    return table


def _submodule(module, name):
    for part in name.split(".")[1:]:
        module = getattr(module, part)
    return module


def _namespace(host):
    modules = dict(_PLAIN, random=_random_module(host), time=_time_module(host))
    return {"__builtins__": _builtins(modules, host), "__name__": "agent"}


def prepare(agent_json):
    """The agent's pieces compiled (each at its own line of the cell), marshalled. Compiling
    is most of what running a little Python costs here, so it happens once, at load."""
    package = json.loads(agent_json)
    # blank lines first: the code keeps its line numbers
    return marshal.dumps([compile("\n" * (piece["line"] - 1) + piece["code"], AGENT_FILE,
                                  "exec") for piece in package["pieces"]])


def _lines(package):
    """The agent's source lines by number, for tracebacks."""
    lines = {}
    for piece in package["pieces"]:
        for offset, text in enumerate(piece["code"].splitlines()):
            lines[piece["line"] + offset] = text
    return lines


# --- one step ----------------------------------------------------------------------------------


def _normalise(out):
    """A ``(state, outbox, status)`` tuple and ``(to, payload)`` pairs in ABI v1 shape;
    anything else is left for the host to judge, as the in-process agent's result is."""
    if isinstance(out, tuple) and len(out) == 3:
        out = {"state": out[0], "outbox": out[1], "status": out[2]}
    if isinstance(out, dict) and isinstance(out.get("outbox"), (list, tuple)):
        out = dict(out, outbox=[{"to": m[0], "payload": m[1]}
                                if isinstance(m, (list, tuple)) and len(m) == 2 else m
                                for m in out["outbox"]])
    return out


def _fault(kind, detail, **data):
    return json.dumps({"kind": kind, "detail": detail, "data": data}, ensure_ascii=False)


def _agent_frames(exc):
    frames = traceback.extract_tb(exc.__traceback__)
    return [f for f in frames if f.filename == AGENT_FILE]


def _exception_fault(exc, package):
    lines = _lines(package)
    frames = _agent_frames(exc)
    where = f"{frames[-1].name} line {frames[-1].lineno}" if frames else ""
    shown = "".join(f"  {f.name} line {f.lineno}: {lines.get(f.lineno, '').strip()}\n"
                    for f in frames[-20:])
    message = f"{type(exc).__name__}: {exc}"
    trace = f"Traceback (most recent call last):\n{shown}{message}"
    at = f" at {where}" if where else ""
    if isinstance(exc, RecursionError):
        return _fault("trap", f"the agent's Python stack overflowed{at}: {exc}",
                      code="stack_overflow", message=str(exc), at=where, traceback=trace)
    if isinstance(exc, MemoryError):
        return _fault("memory_limit", f"the agent ran out of memory{at} (MemoryError)",
                      cause=message, at=where, traceback=trace)
    return _fault("fault", message, where=where, traceback=trace)


def run_step(agent_json, code, input_json):
    """(True, output JSON) or (False, fault JSON)."""
    package = json.loads(agent_json)
    request = json.loads(input_json)
    host = Host(package["capabilities"])
    namespace = _namespace(host)
    try:
        for piece in marshal.loads(code):
            exec(piece, namespace)
        entry = namespace[package["entry"]]
        if package["kind"] == "class":
            entry = entry().step
        inbox = [{k: v for k, v in m.items() if k != "to"} for m in request["inbox"]]
        out = _normalise(entry(request["state"], inbox, host))
    except BaseException as exc:
        return False, _exception_fault(exc, package)
    try:
        return True, json.dumps(out, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        reason = f"output is not JSON ({type(exc).__name__}: {exc})"
        return False, _fault("malformed_output", f"{reason}; see docs/abi.md for the output "
                             "format", reason=reason)


class WitWorld(wit_world.WitWorld):
    def prepare(self, agent: str) -> bytes:
        # (a syntax error traps: the parser reaches for the source file; the host parses
        # the source before, to say so)
        return prepare(agent)

    def step(self, agent: str, code: str, input: str) -> str:
        ok, text = run_step(agent, code.encode("latin-1"), input)
        if not ok:
            raise componentize_py_types.Err(text)
        return text

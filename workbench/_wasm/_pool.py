"""The WebAssembly worker pool: agents' steps run in worker processes, not in the kernel.

A :class:`WorkerPool` keeps ``workers`` worker processes (default: one per CPU core), started
by its own fork server that has already imported wasmtime, so a worker starts in milliseconds.
Agents are assigned to workers by the order they are added (agent *i* goes to worker
*i mod workers*); a worker hosts many agents' compiled modules and runs their steps
concurrently, one thread per running agent. The assignment never changes a result: every
step is a pure function of its request and host calls.

Each :class:`PooledWasmExecutor` multiplexes its steps over its worker's socket with request
ids. A reader thread per worker routes the worker's frames to the waiting ``step`` call, and
that calling (scheduler) thread serves the guest's host calls itself, so an agent blocked in
``infer`` at the inference barrier blocks nobody else, and no lock is held while it waits.

Crash recovery: a dead worker is seen as end-of-stream on its socket; its exit status gives
the signal. The next step that needs it starts a replacement and loads the worker's agents
again (state is host-held, so nothing else is restored). An interrupted step is re-run after
``host.restart()`` (host calls already answered are served again from memory) in a fresh
single-use worker that hosts only that agent: an agent whose step kills its worker then takes
its neighbours down once at most, and they never see a ``crashed`` fault, so results do not
depend on which agents share a worker. After ``max_crashes`` crashes of the same step the
step returns a ``crashed`` fault, so ``step`` always returns.

Compiling an untrusted module happens in a worker under a time limit: a module that crashes
or hangs the compiler is an :class:`~workbench.errors.InvalidModule`, never a dead kernel.
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import hashlib
import itertools
import os
import queue
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench._types import (
    HOST_CALLS,
    AgentIdentity,
    Fault,
    HostCalls,
    Limits,
    StepRequest,
    StepResult,
)
from workbench._wasm import _abi, _worker
from workbench._wasm._forkserver import ForkServer, Launcher, SpawnLauncher
from workbench._wasm._frames import (
    DEFAULT_MAX_FRAME,
    Frame,
    FrameReader,
    FrameWriter,
    Kind,
    pack,
    unpack,
)
from workbench._wasm._local import load_wasm
from workbench.errors import CapabilityError, ConfigError, FrameTooLarge, InvalidModule, RunClosed

__all__ = ["PooledWasmExecutor", "WorkerPool"]

MAX_AGENTS_PER_WORKER = _worker.MAX_THREADS
"""A worker runs each of its agents' steps on its own thread; this bounds the threads."""
COMPILE_TIMEOUT_S = 120.0
"""Default time limit for compiling one module in a worker (a cache hit takes ~1 ms)."""
STEP_GRACE_S = 60.0
"""A worker silent for ``2 * timeout_s + STEP_GRACE_S`` during a step (no host call, no
result) is killed; the sandbox's own deadline normally ends a step long before."""
_STEP_META_ROOM = 1024
"""Room in a STEP frame for its meta (agent id and limits) beside the step input."""
MAX_REPLACE_TRIES = 5
"""Replacement workers started in a row (each dying while loading) before giving up."""
_REAP_WAIT_S = 10.0
_STALL_S = 300.0
MAX_QUEUED_FRAMES = 64
"""Frames of one step waiting for its thread (``log`` lines are sent without a reply)."""
_U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class _Died:
    """Queued to every waiting request when its worker's stream ends."""

    signal: int | None
    exitcode: int | None


@dataclass(frozen=True, slots=True)
class _Module:
    """What a worker needs to load an agent (kept to load it again after a crash)."""

    agent: int
    sha256: str
    wasm: bytes  # one bytes object per distinct module (WorkerPool interns them)
    source: str
    capabilities: tuple[str, ...]

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return self.sha256, self.capabilities

    def payload(self, with_bytes: bool) -> bytes:
        """A LOAD payload; without the module's bytes when the worker has them already."""
        return pack({"agent": self.agent, "sha256": self.sha256, "source": self.source,
                     "capabilities": list(self.capabilities)},
                    self.wasm if with_bytes else b"")


class _Connection:
    """One worker process and its socket: one life of a pool slot.

    Requests register a queue under their id; the reader thread puts every frame for that id
    there, and a :class:`_Died` when the stream ends. A step's queue holds at most
    MAX_QUEUED_FRAMES: past that the reader waits, and the socket holds the worker back.
    That wait is short: a step sends nothing after a call that needs a reply until it has
    the reply, so its thread is always draining what is queued.
    """

    def __init__(self, launcher: Launcher, index: int, args: dict[str, Any]) -> None:
        ours, theirs = socket.socketpair()
        try:
            self._proc = launcher.start(theirs, args)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.pid = self._proc.pid
        self._sock = ours
        self._reader = FrameReader(ours, int(args["max_frame"]))
        self._writer = FrameWriter(ours, int(args["max_frame"]))
        self._lock = threading.Lock()
        self._waiting: dict[int, queue.Queue[Frame | _Died]] = {}
        self.died: _Died | None = None
        self.sent: set[tuple[str, tuple[str, ...]]] = set()  # modules whose bytes it got
        self._thread = threading.Thread(target=self._read_loop, daemon=True,
                                        name=f"workbench-wasm-reader-{index}")
        self._thread.start()

    def open(self, rid: int) -> queue.Queue[Frame | _Died]:
        """A queue for the frames of request ``rid`` (already holding _Died if dead)."""
        inbox: queue.Queue[Frame | _Died] = queue.Queue(MAX_QUEUED_FRAMES)
        with self._lock:
            if self.died is not None:
                inbox.put(self.died)
            else:
                self._waiting[rid] = inbox
        return inbox

    def forget(self, rid: int) -> None:
        with self._lock:
            self._waiting.pop(rid, None)

    def send(self, kind: Kind, rid: int, payload: bytes = b"") -> None:
        """Send a frame; a dead worker is ignored here (its requests see _Died).
        Raises FrameTooLarge."""
        try:
            self._writer.write(kind, rid, payload)
        except FrameTooLarge:
            raise
        except OSError:
            pass

    def kill(self) -> None:
        """SIGKILL the worker (a hung compile or step); its requests then see _Died."""
        self._proc.kill()

    def close(self) -> None:
        """Ask the worker to exit and wait until the reader has reaped it. Idempotent."""
        self.send(Kind.SHUTDOWN, 0)
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join()
        self._reader.close()
        self._sock.close()

    def _read_loop(self) -> None:
        try:
            while (frame := self._reader.read()) is not None:
                with self._lock:
                    inbox = self._waiting.get(frame.rid)
                if inbox is not None:
                    inbox.put(frame, timeout=_STALL_S)
        except (OSError, ValueError, queue.Full):
            self.kill()  # a frame we cannot read or nobody takes: the worker is broken
        died = self._reap()
        with self._lock:
            self.died = died
            waiting, self._waiting = list(self._waiting.values()), {}
        for inbox in waiting:  # each owner drains its queue until it sees this
            with contextlib.suppress(queue.Full):
                inbox.put(died, timeout=_STALL_S)

    def _reap(self) -> _Died:
        """Wait for the process to end and read its exit status."""
        code = self._proc.wait(_REAP_WAIT_S)
        if code is None:  # stream closed but process alive (or unknown): end it
            self.kill()
            code = self._proc.wait(_REAP_WAIT_S)
        return _Died(signal=-code if code is not None and code < 0 else None, exitcode=code)


class _Slot:
    """A position in the pool: the current worker plus the agents assigned to it."""

    def __init__(self, pool: WorkerPool, index: int) -> None:
        self._pool = pool
        self.index = index
        self.lock = threading.RLock()
        self.modules: dict[int, _Module] = {}
        self.restarts = 0
        self.conn = pool._start_worker(index)

    def current(self) -> _Connection:
        with self.lock:
            return self.conn

    def live(self) -> _Connection:
        """The worker, replaced first if it is known to have died. Takes the lock only to
        replace, so steps never wait for a slow compile in :meth:`load`."""
        conn = self.conn
        if conn.died is None:
            return conn
        with self.lock:
            return self.replace(conn)

    def replace(self, dead: _Connection) -> _Connection:
        """The live worker after ``dead`` died: started (and its agents loaded) by the first
        caller, reused by the others. Raises RunClosed, or RuntimeError if replacements keep
        dying while loading."""
        with self.lock:
            for _ in range(MAX_REPLACE_TRIES):
                if self.conn is not dead and self.conn.died is None:
                    return self.conn
                self._pool._check_open()
                self.conn.close()
                fresh = self._pool._start_worker(self.index)
                self.restarts += 1
                self._load_all(fresh)
                self.conn = fresh  # published only once loaded: live() reads it unlocked
            if self.conn.died is None:
                return self.conn
            raise RuntimeError(f"worker {self.index} died {MAX_REPLACE_TRIES} times in a row "
                               "while its agents were being loaded")

    def _load_all(self, conn: _Connection) -> None:
        """Load every assigned agent into a fresh worker: pipelined, each module's bytes sent
        once (the worker counts its users in frame order), compiled modules from the cache."""
        waiting = []
        for module in self.modules.values():
            rid = self._pool._next_rid()
            waiting.append((rid, conn.open(rid), module))
            conn.send(Kind.LOAD, rid, module.payload(module.key not in conn.sent))
            conn.sent.add(module.key)
        for rid, inbox, module in waiting:
            try:
                reply = inbox.get(timeout=self._pool.compile_timeout_s)
            except queue.Empty:
                conn.kill()
                return
            finally:
                conn.forget(rid)
            if isinstance(reply, Frame) and unpack(reply.payload)[0].get("error") == "missing":
                self._load_once(conn, module)

    def load(self, module: _Module) -> None:
        """Compile and load ``module`` in this slot's worker. Raises InvalidModule."""
        with self.lock:
            crashed: _Died | None = None
            for _ in range(2):  # a crash can be a coincidence once, not twice
                reply = self._load_once(self.conn, module)
                if not isinstance(reply, _Died):
                    break
                crashed = reply
                self.replace(self.conn)
            else:
                assert crashed is not None
                raise InvalidModule(module.source, "compiling it crashed the worker process "
                                    f"({_how(crashed)})")
            meta, _ = unpack(reply.payload)
            if not meta.get("ok"):
                raise _load_error(module, meta)
            self.modules[module.agent] = module

    def load_alone(self, conn: _Connection, agent: int) -> Frame | _Died:
        """Load an assigned agent into a single-use worker; _Died if that fails."""
        try:
            reply = self._load_once(conn, self.modules[agent])
        except InvalidModule:  # timed out: the worker is killed, _Died follows
            return _Died(signal=None, exitcode=None)
        if isinstance(reply, _Died) or unpack(reply.payload)[0].get("ok"):
            return reply
        return _Died(signal=None, exitcode=None)

    def _load_once(self, conn: _Connection, module: _Module) -> Frame | _Died:
        """LOAD and wait for LOADED; the bytes go again if the worker no longer has them.
        Raises InvalidModule (and kills the worker) past the compile time limit."""
        reply = self._request_load(conn, module, module.key not in conn.sent)
        conn.sent.add(module.key)
        if isinstance(reply, Frame) and unpack(reply.payload)[0].get("error") == "missing":
            reply = self._request_load(conn, module, True)
        return reply

    def _request_load(self, conn: _Connection, module: _Module, with_bytes: bool
                      ) -> Frame | _Died:
        rid = self._pool._next_rid()
        inbox = conn.open(rid)
        try:
            conn.send(Kind.LOAD, rid, module.payload(with_bytes))
            try:
                return inbox.get(timeout=self._pool.compile_timeout_s)
            except queue.Empty:
                conn.kill()
                raise InvalidModule(module.source, "compiling it took longer than "
                                    f"{self._pool.compile_timeout_s:g} s") from None
        finally:
            conn.forget(rid)

    def unload(self, agent: int) -> None:
        with self.lock:
            module = self.modules.pop(agent, None)
            if module is not None:
                self.conn.send(Kind.UNLOAD, 0, pack({"agent": agent}))
                self._pool._release_bytes(module.sha256)


class _Default(enum.Enum):
    CACHE = "the workbench cache"


class WorkerPool:
    """Worker processes that run sandboxed WebAssembly agents, for one run or shared by many.

    A run makes its own pool (``Run(workers=N)``) and closes it in ``run.close()``; make one
    yourself to share it between runs (``Run(workers=pool)``): a run then never closes it,
    its agents are unloaded when the run closes, and you close the pool (or use it as a
    context manager). Using it after ``close()`` raises RunClosed.

    ``workers`` is the number of worker processes (default ``os.cpu_count()``); agent *i*
    runs in worker *i mod workers*, each worker hosting at most MAX_AGENTS_PER_WORKER agents
    (ConfigError past that). The workers and the pool's fork server start here, so the
    constructor takes about 0.2 s and raises OSError if they cannot be started.
    ``cache_dir`` is where compiled modules are kept (default: ``modules/`` in the workbench
    cache, ``$WORKBENCH_CACHE`` or ``~/.cache/workbench``; None: nowhere, so a replacement
    worker compiles its agents' modules again). ``max_crashes`` is how many times one step may
    crash its worker before it returns a ``crashed`` fault; ``compile_timeout_s`` bounds
    compiling one module (InvalidModule past it); ``max_frame`` bounds one message either way
    (a module, a step's input or output, an infer result): a larger one raises FrameTooLarge.
    ``start_method`` is ``"forkserver"`` (fast) or ``"spawn"`` (a fresh interpreter per
    worker). Bad values raise ConfigError.
    """

    def __init__(self, workers: int | None = None, *,
                 cache_dir: str | os.PathLike[str] | _Default | None = _Default.CACHE,
                 max_crashes: int = 3, compile_timeout_s: float = COMPILE_TIMEOUT_S,
                 max_frame: int = DEFAULT_MAX_FRAME, start_method: str = "forkserver") -> None:
        if workers is None:
            workers = os.cpu_count() or 1
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ConfigError(f"a worker pool needs at least one worker, got workers={workers!r}")
        if max_crashes < 1:
            raise ConfigError(f"max_crashes must be at least 1, got {max_crashes}")
        if not isinstance(max_frame, int) or max_frame < _STEP_META_ROOM + 1024:
            raise ConfigError(f"max_frame must be an int of at least {_STEP_META_ROOM + 1024} "
                              f"bytes, got {max_frame!r}")
        self.max_crashes = max_crashes
        self.compile_timeout_s = float(compile_timeout_s)
        if cache_dir is _Default.CACHE:
            from workbench._cachedir import cache_root

            cache_dir = cache_root() / "modules"
        self._cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self._max_frame = max_frame
        if start_method not in ("forkserver", "spawn"):
            raise ConfigError(f"start_method must be 'forkserver' or 'spawn', got "
                              f"{start_method!r}")
        self._start_method = start_method
        self._rids: Iterator[int] = itertools.count(1)
        self._agents = itertools.count()
        self._closed = False
        self._lock = threading.Lock()
        self._slots: list[_Slot] = []
        self._alone: set[_Connection] = set()
        self._bytes: dict[str, tuple[bytes, int]] = {}  # sha256 -> (module, its agents)
        self._server: ForkServer | None = None  # this pool's own, started on first use
        self._server_lock = threading.Lock()
        self.reruns = 0
        atexit.register(self.close)  # orderly exit for a pool nobody closed
        try:
            for index in range(workers):
                self._slots.append(_Slot(self, index))
        except BaseException:
            self.close()
            raise

    def executor(self, source: str | Path | bytes, *, name: str, limits: Limits | None = None,
                 capabilities: tuple[str, ...] = HOST_CALLS,
                 wall_clock: bool = True) -> PooledWasmExecutor:
        """Load an agent module (wasm bytes, or a .wasm/.wat path) into a worker.

        ``wall_clock=False`` runs its steps without the ``timeout_s`` backstop (replay).
        Raises InvalidModule/CapabilityError (bad module, or one that crashes or hangs the
        compiler), ConfigError (missing file, full pool, a ``max_input_bytes`` larger than
        the pool's frames), RunClosed (pool closed).
        """
        self._check_open()
        limits = limits or Limits()
        if limits.max_input_bytes + _STEP_META_ROOM > self._max_frame:
            raise ConfigError(f"Limits(max_input_bytes={limits.max_input_bytes}) does not fit "
                              f"this pool's frames of {self._max_frame} bytes; lower it, or "
                              "run the agent in a pool with larger frames: "
                              "Run(workers=wb.WorkerPool(max_frame=...))")
        unknown = sorted(set(capabilities) - set(HOST_CALLS))
        if unknown:
            raise ConfigError(f"unknown capabilities {unknown}; ABI v1 has {list(HOST_CALLS)}")
        capabilities = tuple(c for c in HOST_CALLS if c in capabilities)
        wasm, label = load_wasm(source)
        sha = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            agent = next(self._agents)
        slot = self._slots[agent % len(self._slots)]
        if len(slot.modules) >= MAX_AGENTS_PER_WORKER:
            raise ConfigError(f"worker {slot.index} already hosts {MAX_AGENTS_PER_WORKER} "
                              "agents; use more workers: Run(workers=...) or "
                              "wb.WorkerPool(workers=...)")
        wasm = self._intern_bytes(sha, wasm)
        try:
            slot.load(_Module(agent, sha, wasm, label, capabilities))
        except BaseException:
            self._release_bytes(sha)
            raise
        return PooledWasmExecutor(self, slot, agent, name, sha, limits, capabilities,
                                  wall_clock)

    @property
    def size(self) -> int:
        return len(self._slots)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def alive(self) -> int:
        """Worker processes not known to have died (0 once closed)."""
        if self._closed:
            return 0
        return sum(1 for slot in self._slots if slot.conn.died is None)

    @property
    def agents(self) -> int:
        """Agents loaded now (each run unloads its agents when it closes)."""
        return sum(len(slot.modules) for slot in self._slots)

    @property
    def fork_server_pid(self) -> int | None:
        """The process id of this pool's fork server (None with ``start_method="spawn"``,
        before the first worker starts, and once closed); for diagnostics and tests."""
        server = self._server
        return None if server is None else server.pid

    @property
    def restarts(self) -> int:
        """Workers replaced after dying, over the pool's life."""
        return sum(slot.restarts for slot in self._slots)

    def pids(self) -> list[int]:
        """The worker process ids, in slot order, after replacing any known to be dead (for
        diagnostics and tests). Raises RunClosed."""
        self._check_open()
        return [slot.live().pid for slot in self._slots]

    def worker_of(self, executor: PooledWasmExecutor) -> int:
        """The slot index that runs ``executor``'s agent."""
        return executor._slot.index

    def ping(self) -> list[float]:
        """Round-trip time of one small frame to each worker, in seconds."""
        import time

        times = []
        for slot in self._slots:
            conn = slot.current()
            rid = self._next_rid()
            inbox = conn.open(rid)
            start = time.perf_counter()
            conn.send(Kind.PING, rid, b"x")
            inbox.get()
            times.append(time.perf_counter() - start)
            conn.forget(rid)
        return times

    def close(self) -> None:
        """Stop every worker and the fork server, and join their reader threads.
        Idempotent; steps in flight raise RunClosed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        with self._lock:
            alone = list(self._alone)
        for conn in alone:
            conn.kill()
        for slot in self._slots:
            with slot.lock:
                slot.conn.close()
        with self._server_lock:  # after the workers: it reports their exit statuses
            server, self._server = self._server, None
        if server is not None:
            server.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"<WorkerPool {state} workers={len(self._slots)} alive={self.alive} "
                f"agents={self.agents} restarts={self.restarts} reruns={self.reruns}>")

    # -- for slots and executors --------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RunClosed("worker pool")

    def _next_rid(self) -> int:
        with self._lock:
            return next(self._rids) & 0xFFFFFFFF

    def _intern_bytes(self, sha: str, wasm: bytes) -> bytes:
        """One copy of each distinct module for all the agents that use it."""
        with self._lock:
            kept, users = self._bytes.get(sha, (wasm, 0))
            self._bytes[sha] = (kept, users + 1)
            return kept

    def _release_bytes(self, sha: str) -> None:
        with self._lock:
            kept, users = self._bytes.get(sha, (b"", 0))
            if users > 1:
                self._bytes[sha] = (kept, users - 1)
            else:
                self._bytes.pop(sha, None)

    def _reruns_started(self, conn: _Connection) -> None:
        with self._lock:
            self._alone.add(conn)
            self.reruns += 1

    def _reruns_done(self, conn: _Connection) -> None:
        with self._lock:
            self._alone.discard(conn)

    def _start_worker(self, index: int) -> _Connection:
        args = {"cache_dir": self._cache_dir, "max_frame": self._max_frame,
                "sandbox": _worker.SANDBOX}
        return _Connection(self._launcher(), index, args)

    def _launcher(self) -> Launcher:
        """This pool's fork server, started (again, if it died) here. Raises RunClosed."""
        if self._start_method == "spawn":
            return SpawnLauncher()
        with self._server_lock:
            self._check_open()
            if self._server is not None and not self._server.alive:
                self._server.close()
                self._server = None
            if self._server is None:
                self._server = ForkServer()
            return self._server


class PooledWasmExecutor:
    """One agent in a :class:`WorkerPool` (implements the Executor protocol).

    ``step`` may be called from many threads at once (one per running agent); it always
    returns, with a ``crashed`` fault after ``max_crashes`` worker deaths in one step. An
    exception raised by a host call (an engine failure) is re-raised from ``step``, as the
    in-process executor does.
    """

    def __init__(self, pool: WorkerPool, slot: _Slot, agent: int, name: str, sha256: str,
                 limits: Limits, capabilities: tuple[str, ...], wall_clock: bool = True
                 ) -> None:
        self._pool = pool
        self._slot = slot
        self._agent = agent
        self.name = name
        self.limits = limits
        self.capabilities = capabilities
        self._hash = sha256
        self._meta = {"agent": agent, "fuel": limits.fuel, "memory_bytes": limits.memory_bytes,
                      "timeout_s": limits.timeout_s if wall_clock else None,
                      "max_output_bytes": limits.max_output_bytes}
        # A worker silent this long during a step is killed (None: replay, fuel bounds it).
        self._silence_s = 2 * limits.timeout_s + STEP_GRACE_S if wall_clock else None
        self._closed = False

    def identity(self) -> AgentIdentity:
        return _abi.agent_identity(self._hash, self.limits, self.capabilities)

    def step(self, request: StepRequest, host: HostCalls) -> StepResult:
        """Run one step in the worker. Raises RunClosed if the pool or executor is closed.

        A step whose worker died is re-run alone in a fresh single-use worker, so an agent
        whose steps crash their worker gets the ``crashed`` fault, never its neighbours."""
        if self._closed:
            raise RunClosed(f"executor of agent {self.name!r}")
        self._pool._check_open()
        input_json = _abi.encode_input(request)
        too_large = _abi.input_fault(input_json, self.limits)
        if too_large is not None:
            return StepResult(state=None, fault=too_large)
        payload = pack(self._meta, input_json)
        outcome = self._attempt(self._slot.live(), payload, host)
        crashes = 0
        while isinstance(outcome, _Died):
            crashes += 1
            if crashes >= self._pool.max_crashes:
                return _crashed(request, outcome, crashes)
            self._pool._check_open()
            host.restart()
            outcome = self._alone(payload, host)
        return self._result(outcome)

    def _alone(self, payload: bytes, host: HostCalls) -> Frame | _Died:
        """One attempt in a single-use worker that hosts only this agent."""
        try:
            conn = self._pool._start_worker(-1)
        except OSError:
            return _Died(signal=None, exitcode=None)
        self._pool._reruns_started(conn)
        try:
            loaded = self._slot.load_alone(conn, self._agent)
            if isinstance(loaded, _Died):
                return loaded
            return self._attempt(conn, payload, host)
        finally:
            self._pool._reruns_done(conn)
            conn.close()

    def _attempt(self, conn: _Connection, payload: bytes, host: HostCalls) -> Frame | _Died:
        """Send the step and serve its host calls until it ends or the worker dies."""
        rid = self._pool._next_rid()
        inbox = conn.open(rid)
        failure: BaseException | None = None
        adapter = _abi.HostCallsAdapter(host)
        try:
            conn.send(Kind.STEP, rid, payload)
            while True:
                try:
                    item = inbox.get(timeout=self._silence_s)
                except queue.Empty:
                    conn.kill()  # the worker went silent: treat it as a crash
                    continue
                if isinstance(item, Frame) and item.kind is Kind.HOST_CALL:
                    reply, error = _serve_host_call(item.payload, adapter, failure is not None)
                    failure = failure or error
                    if reply is not None:
                        conn.send(Kind.HOST_REPLY, rid, reply)
                    continue
                if failure is not None and not isinstance(item, _Died):
                    raise failure
                return item
        finally:
            conn.forget(rid)

    def _result(self, frame: Frame) -> StepResult:
        meta, output = unpack(frame.payload)
        if frame.kind is Kind.FAULT:
            return StepResult(state=None, fault=Fault(str(meta["kind"]), str(meta["detail"]),
                                                      dict(meta.get("data") or {})))
        outcome = _abi.StepOutcome(
            output=output, fault=None, fuel_consumed=int(meta.get("fuel_consumed", 0)),
            memory_size=int(meta.get("memory_size", 0)),
            memory_at_limit=bool(meta.get("memory_at_limit", False)),
            host_calls=int(meta.get("host_calls", 0)))
        return _abi.outcome_to_result(outcome, max_output_bytes=self.limits.max_output_bytes)

    def close(self) -> None:
        """Unload the agent from its worker. Idempotent."""
        if not self._closed:
            self._closed = True
            if not self._pool.closed:
                self._slot.unload(self._agent)

    def __repr__(self) -> str:
        return (f"<PooledWasmExecutor {self.name!r} worker={self._slot.index} "
                f"hash={self._hash[:12]}>")


def _serve_host_call(payload: bytes, host: _abi.HostCallsAdapter, failed: bool
                     ) -> tuple[bytes | None, BaseException | None]:
    """Run one forwarded host call: (reply payload or None if the worker does not wait for
    one, the exception the host raised). Once a call of the step ``failed``, later calls
    are refused without reaching the host, as the in-process sandbox stops at the first."""
    meta, arg = unpack(payload)
    fn = meta.get("fn")
    if meta.get("reply") is False:
        if fn != "log":
            raise ValueError(f"worker sent host call {fn!r} without waiting for its result")
        if failed:
            return None, None
        try:
            host.log(arg)
        except Exception as exc:  # re-raised from step() once the worker has unwound
            return None, exc
        return None, None
    if failed:
        return pack({"ok": False, "error": "an earlier host call of this step failed"}), None
    try:
        if fn == "infer":
            return pack({"ok": True}, host.infer(arg)), None
        if fn == "log":
            host.log(arg)
            return pack({"ok": True}), None
        if fn in ("random", "now"):
            value = host.random() if fn == "random" else host.now()
            return pack({"ok": True}, (value & _U64).to_bytes(8, "little")), None
        raise ValueError(f"worker asked for unknown host call {fn!r}")
    except Exception as exc:  # re-raised from step() once the worker has unwound
        return pack({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), exc


def _crashed(request: StepRequest, died: _Died, attempts: int, extra: str = "") -> StepResult:
    detail = (f"agent {request.agent!r} step {request.step}: its worker died {attempts} "
              f"times ({_how(died)}) {extra}").strip()
    return StepResult(state=None, fault=Fault("crashed", detail, {"signal": died.signal}))


def _how(died: _Died) -> str:
    if died.signal is not None:
        return f"signal {died.signal}"
    return f"exit code {died.exitcode}"


def _load_error(module: _Module, meta: dict[str, Any]) -> InvalidModule:
    if meta.get("error") == "capability":
        return CapabilityError(module.source, str(meta.get("name")),
                               tuple(str(g) for g in meta.get("granted", ())),
                               via=meta.get("via"))
    return InvalidModule(module.source, str(meta.get("reason", "unknown reason")))

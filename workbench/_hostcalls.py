"""The one host-call dispatcher, and the inference barrier.

A :class:`StepHost` exists for one step. Each running agent gets an :class:`AgentHost` (the
:class:`~workbench._types.HostCalls` its executor sees). ``random``/``now`` are pure functions
of (seed, agent, step, call index). ``infer`` parks the calling thread; when every agent of the
step has either finished or is parked in ``infer``, the last one to arrive runs all pending
requests through the engine as one batch, in agent order, chunked by ``max_batch``, and wakes
the others. Batch composition therefore depends on agent logic only, never on timing.

Every call is recorded (``AgentHost.calls``) for the journal. In replay, ``infer`` results come
from the journal instead of an engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from workbench import _canonical
from workbench._derive import derive_u64, logical_now
from workbench._events import EventBus
from workbench._types import JSON, InferenceBackend, InferRequest, InferResult, Limits
from workbench.errors import CapabilityError, EngineFailure

MAX_LOG_CHARS = 16_384
"""Longest log line kept; longer text is cut and marked."""
MAX_CALLS_PER_STEP = 10_000
"""Host calls one agent may make in one step; the next one raises."""

InferSource = Callable[[str, int], dict[str, JSON]]
"""Replay: (agent, call index within the step) -> the journaled infer result."""


@dataclass
class AgentCounters:
    """Per-agent counters that live across steps (part of the run's state)."""

    infer_index: int = 0
    tokens_used: int = 0


class StepHost:
    """Host calls and the inference barrier for one step."""

    def __init__(self, *, seed: int, step: int, agents: Sequence[str],
                 engine: InferenceBackend | None, max_batch: int,
                 capabilities: Mapping[str, tuple[str, ...]], limits: Mapping[str, Limits],
                 counters: Mapping[str, AgentCounters], events: EventBus,
                 infer_source: InferSource | None = None) -> None:
        self.seed = seed
        self.step = step
        self._order = {name: i for i, name in enumerate(agents)}
        self._engine = engine
        self._max_batch = max(1, max_batch)
        self._caps = capabilities
        self._limits = limits
        self._counters = counters
        self._events = events
        self._infer_source = infer_source
        self._cond = threading.Condition()
        self._running = set(agents)
        self._pending: dict[str, InferRequest] = {}
        self._results: dict[str, InferResult | BaseException] = {}
        self._queued_at: dict[str, float] = {}  # when each pending request arrived (display)
        self._batches = 0
        self._batching = False
        self.engine_error: BaseException | None = None
        self.hosts = {name: AgentHost(self, name) for name in agents}

    def finished(self, agent: str) -> None:
        """The agent's step returned (or faulted): it no longer holds the barrier."""
        with self._cond:
            self._running.discard(agent)
            leader = self._should_release()
        if leader:
            self._run_batches()

    def _should_release(self) -> bool:
        if self._batching or not self._pending:
            return False
        if len(self._pending) < len(self._running):
            return False
        self._batching = True
        return True

    def _wait_for(self, agent: str, request: InferRequest) -> InferResult:
        with self._cond:
            self._pending[agent] = request
            self._queued_at[agent] = time.monotonic()
            self._events.emit("infer_queued", self.step, agent, {"call": request.index})
            leader = self._should_release()
        if leader:
            self._run_batches()
        with self._cond:
            while agent not in self._results:
                self._cond.wait()
            outcome = self._results.pop(agent)
        if isinstance(outcome, BaseException):
            raise EngineFailure(f"the engine failed while serving step {self.step}: "
                                f"{outcome}") from outcome
        return outcome

    def _run_batches(self) -> None:
        with self._cond:
            batch = sorted(self._pending.values(), key=lambda r: self._order[r.agent])
            self._pending.clear()
        results: dict[str, InferResult | BaseException] = {}
        for start in range(0, len(batch), self._max_batch):
            chunk = batch[start:start + self._max_batch]
            if self.engine_error is not None:  # the step is lost: spare the engine
                results.update(dict.fromkeys((r.agent for r in chunk), self.engine_error))
                continue
            results.update(self._serve(chunk))
        with self._cond:
            self._results.update(results)
            self._batching = False
            self._cond.notify_all()

    def _serve(self, chunk: list[InferRequest]) -> dict[str, InferResult | BaseException]:
        agents = [r.agent for r in chunk]
        batch, self._batches = self._batches, self._batches + 1
        started = time.monotonic()
        queue_s = [started - self._queued_at.get(a, started) for a in agents]
        self._events.emit("infer_batch", self.step, None,
                          {"agents": agents, "phase": "start", "batch": batch})
        if self._engine is None:
            error = EngineFailure("this run has no model: pass Run(model=...) to use infer")
            return dict.fromkeys(agents, error)
        try:
            out = self._engine.infer_batch(chunk, on_token=self._on_token)
            if len(out) != len(chunk):
                raise EngineFailure(f"engine returned {len(out)} results for {len(chunk)}")
        except BaseException as exc:
            self.engine_error = exc
            return dict.fromkeys(agents, exc)
        timings = getattr(self._engine, "last_timings", {})
        spans = [timings.get((r.agent, r.index), (0.0, 0.0)) for r in chunk]
        self._events.emit("infer_batch", self.step, None, {
            "agents": agents, "phase": "end", "batch": batch,
            "provider": out[0].provider if out else None,
            "tokens": [len(r.tokens) for r in out], "queue_s": queue_s,
            "prefill_s": [p for p, _ in spans], "decode_s": [d for _, d in spans]})
        return dict(zip(agents, out, strict=True))

    def _on_token(self, agent: str, index: int, token: int, piece: str) -> None:
        self._events.emit("token", self.step, agent,
                          {"call": index, "token": token, "text": piece})

    # -- used by AgentHost ----------------------------------------------------------------

    def serve_infer(self, agent: str, call_index: int, request: InferRequest) -> InferResult:
        if self._infer_source is not None:
            # Replay serves recorded results directly: no barrier, no engine.
            return _result_from_json(self._infer_source(agent, call_index))
        return self._wait_for(agent, request)


class AgentHost:
    """The host calls of one agent in one step (implements ``HostCalls``)."""

    def __init__(self, step_host: StepHost, agent: str) -> None:
        self._sh = step_host
        self.agent = agent
        self.calls: list[dict[str, JSON]] = []
        self._cursor = 0
        self._lock = threading.Lock()
        self._inferring = False  # one infer at a time: the barrier holds one request per agent

    def _granted(self, name: str) -> None:
        granted = self._sh._caps.get(self.agent, ())
        if name not in granted:
            raise CapabilityError(f"agent {self.agent!r}", name, tuple(granted))

    def _memo(self, fn: str, req: JSON) -> tuple[int, dict[str, JSON] | None]:
        """Index of this call; the recorded call if a restarted step already made it."""
        with self._lock:
            i = self._cursor
            if i >= MAX_CALLS_PER_STEP:
                raise RuntimeError(f"agent {self.agent!r} made over {MAX_CALLS_PER_STEP} "
                                   "host calls in one step")
            self._cursor += 1
            if i < len(self.calls):
                done = self.calls[i]
                if done["fn"] == fn and done.get("req") == req:
                    return i, done
                del self.calls[i:]  # the re-run diverged: forget the rest
            return i, None

    def _record(self, call: dict[str, JSON]) -> None:
        with self._lock:
            self.calls.append(call)

    def restart(self) -> None:
        with self._lock:
            self._cursor = 0

    def random(self) -> int:
        return self._derived("random", lambda i: derive_u64(self._sh.seed, "random",
                                                            self.agent, self._sh.step, i))

    def now(self) -> int:
        return self._derived("now", lambda i: logical_now(self._sh.step, i))

    def _derived(self, fn: str, value_at: Callable[[int], int]) -> int:
        """A host call whose value is a pure function of its call index, journaled."""
        self._granted(fn)
        i, done = self._memo(fn, None)
        if done is not None:
            return int(done["res"])
        value = value_at(i)
        self._record({"i": i, "fn": fn, "req": None, "res": value})
        return value

    def log(self, text: str) -> None:
        self._granted("log")
        text = cut_line(journal_text(str(text)))
        i, done = self._memo("log", text)
        if done is not None:
            return
        self._record({"i": i, "fn": "log", "req": text, "res": None})

    def infer(self, request: Mapping[str, JSON]) -> dict[str, JSON]:
        """Generate text. Raises ValueError for a malformed request (journaled as such),
        CapabilityError if not granted, EngineFailure if the engine itself failed."""
        self._granted("infer")
        try:
            req = _plain_request(request, self._sh._limits[self.agent].max_output_bytes)
        except ValueError as exc:  # journaled with no request: it cannot be written
            i, done = self._memo("infer", None)
            if done is None:
                self._record({"i": i, "fn": "infer", "req": None, "res": {"error": str(exc)}})
            raise
        i, done = self._memo("infer", req)
        if done is not None:
            return _replayed(done)
        counters = self._sh._counters[self.agent]
        limits = self._sh._limits[self.agent]
        try:
            parsed = InferRequest.from_json(
                self.agent, counters.infer_index,
                derive_u64(self._sh.seed, "sample", self.agent, counters.infer_index), req)
        except ValueError as exc:
            self._record({"i": i, "fn": "infer", "req": req, "res": {"error": str(exc)}})
            raise
        budget = min(limits.max_tokens_per_step - self._tokens_this_step(),
                     limits.max_tokens_per_run - counters.tokens_used)
        if budget <= 0:
            res: dict[str, JSON] = {"error": "token limit reached", "text": "", "tokens": [],
                                    "finish_reason": "length"}
            self._record({"i": i, "fn": "infer", "req": req, "res": res})
            return dict(res)
        if parsed.max_tokens > budget:
            parsed = replace(parsed, max_tokens=budget)
        counters.infer_index += 1
        result = self._serve_alone(i, parsed)
        counters.tokens_used += len(result.tokens)
        res = result.to_json()
        self._record({"i": i, "fn": "infer", "req": req, "res": res})
        return dict(res)

    def _serve_alone(self, i: int, request: InferRequest) -> InferResult:
        """Raises RuntimeError if this agent's previous infer has not returned yet (a second
        thread of the agent): the barrier holds one request per agent, so a second one would
        wait forever."""
        with self._lock:
            if self._inferring:
                raise RuntimeError(f"agent {self.agent!r} called infer while its previous infer "
                                   "had not returned; call infer from one thread at a time "
                                   "(the barrier batches requests across agents)")
            self._inferring = True
        try:
            return self._sh.serve_infer(self.agent, i, request)
        finally:
            with self._lock:
                self._inferring = False

    def _tokens_this_step(self) -> int:
        used = 0
        for call in self.calls:
            res = call.get("res")
            if call["fn"] == "infer" and isinstance(res, dict):
                used += len(res.get("tokens", ()))
        return used


def cut_line(text: str) -> str:
    """``text`` cut to at most MAX_LOG_CHARS characters, marker included. Idempotent: a cut
    line logged again (replay of a journaled timeout) is kept as it is."""
    if len(text) <= MAX_LOG_CHARS:
        return text
    for digits in range(1, 21):  # the marker's length depends on the number it shows
        keep = MAX_LOG_CHARS - len("... [ chars cut]") - digits
        if len(str(len(text) - keep)) == digits:
            break
    return text[:keep] + f"... [{len(text) - keep} chars cut]"


def journal_text(text: str) -> str:
    """``text`` as it can be journaled: a lone surrogate (not UTF-8) becomes ``\\udXXX``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class UnreadableRequest(Mapping[str, JSON]):
    """An infer request that could not even be read (a guest's bytes that are not JSON):
    refused with ``reason``, and journaled as a call with no request."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __getitem__(self, key: str) -> JSON:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _plain_request(request: object, max_bytes: int) -> JSON:
    """The request as canonical JSON (what is journaled). ValueError if it is unreadable,
    not JSON or over ``max_bytes`` (the agent's max_output_bytes): the agent gets it, and
    the call is journaled with no request, so the step can still commit."""
    if isinstance(request, UnreadableRequest):
        raise ValueError(request.reason)
    try:
        data = _canonical.dumps(dict(request) if isinstance(request, Mapping) else request)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"an infer request must be plain JSON: {exc}") from None
    if len(data) > max_bytes:
        raise ValueError(f"the infer request is {len(data)} bytes, over the agent's "
                         f"max_output_bytes of {max_bytes}; shorten the prompt or raise "
                         "Limits(max_output_bytes=...)")
    return _canonical.loads(data)


def _replayed(done: Mapping[str, JSON]) -> dict[str, JSON]:
    res = done["res"]
    if isinstance(res, dict) and "error" in res and "finish_reason" not in res:
        raise ValueError(str(res["error"]))
    return dict(res)


def _result_from_json(raw: Mapping[str, JSON]) -> InferResult:
    return InferResult(
        text=str(raw.get("text", "")), tokens=tuple(int(t) for t in raw.get("tokens", ())),
        finish_reason=raw.get("finish_reason", "stop"), provider=str(raw.get("provider", "")),
        prompt_tokens=int(raw.get("prompt_tokens", 0)), error=raw.get("error"),
    )

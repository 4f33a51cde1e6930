"""The data that crosses component boundaries, and the protocols components implement.

The scheduler talks to agents only through :class:`Executor` and to the model only through
:class:`InferenceBackend`; both see the run only through :class:`HostCalls`. Everything here is
plain, immutable and JSON-shaped so it can be journaled, sent over a pipe and compared in replay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from workbench.errors import ConfigError

JSON: TypeAlias = Any
"""A value made of dict (str keys), list, str, int, float (finite), bool and None."""

Status = Literal["ready", "idle", "done"]
"""What an agent asks for after a step.

``ready``: run me at my next turn whether or not I have messages; ``idle``: run me only when
a message arrives; ``done``: never run me again (messages to me are dropped and journaled).
"""

FaultPolicy = Literal["fail", "continue", "restart"]
"""On a fault: raise from ``run.step()`` (after journaling), mark the agent faulted and go
on, or reset it to its initial state and go on."""

HOST_CALLS: tuple[str, ...] = ("infer", "log", "random", "now")
"""Every host call of ABI v1, in canonical order."""


@dataclass(frozen=True, slots=True)
class Message:
    """A message in flight. Delivered at ``step + 1``, sorted by (sender rank, seq)."""

    sender: str  # "@user" for run.send(...)
    seq: int  # the sender's own counter, from 0, over the whole run
    step: int  # step in which it was sent (-1 for sends before the first step)
    to: str
    payload: JSON

    def to_json(self) -> dict[str, JSON]:
        return {"from": self.sender, "seq": self.seq, "step": self.step, "to": self.to,
                "payload": self.payload}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message an agent asks to send."""

    to: str
    payload: JSON


MAX_INPUT_BYTES_CEILING = 128 * 1024 * 1024
"""Largest ``Limits.max_input_bytes`` accepted: a step's input must fit one worker frame."""
MAX_MESSAGES_CEILING = 65_536
"""Largest ``Limits.max_messages`` accepted: each message of a step takes room (besides its
payload) in the step's journal record, which holds 16 MiB."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-agent limits. Every breach is a journaled fault at the same step on every replay.

    ``fuel``, ``memory_bytes`` and ``max_input_bytes`` apply to WebAssembly agents.
    ``max_input_bytes`` bounds the step input (state plus inbox, as canonical JSON), checked
    before the step is dispatched to any executor. ``timeout_s`` is a wall-clock backstop
    only: a timeout is journaled, and replay takes it as given (see docs/abi.md).
    ``max_messages`` bounds the messages an agent sends, and receives, per step;
    ``max_queued`` bounds the messages waiting for it: a sender whose message would overflow
    it gets a ``limit`` fault instead of the message being lost.
    """

    fuel: int = 100_000_000
    memory_bytes: int = 64 * 1024 * 1024
    max_state_bytes: int = 1024 * 1024
    max_output_bytes: int = 1024 * 1024
    max_messages: int = 1024
    max_queued: int = 10_000
    max_tokens_per_step: int = 4096
    max_tokens_per_run: int = 1_000_000
    timeout_s: float = 10.0
    max_input_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        """Raises ConfigError naming the first limit that is out of range."""
        for name, value in self.to_json().items():
            if name == "timeout_s":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Limits({name}={value!r}) must be a positive integer")
        timeout = self.timeout_s
        if (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                or not 0 < timeout < math.inf):
            raise ConfigError(f"Limits(timeout_s={timeout!r}) must be a positive, finite "
                              "number of seconds")
        if self.max_messages > MAX_MESSAGES_CEILING:
            raise ConfigError(f"Limits(max_messages={self.max_messages}) must be at most "
                              f"{MAX_MESSAGES_CEILING}: each message of a step takes room in "
                              "the step's journal record; send fewer, larger messages")
        if self.max_input_bytes > MAX_INPUT_BYTES_CEILING:
            raise ConfigError(f"Limits(max_input_bytes={self.max_input_bytes}) must be at "
                              f"most {MAX_INPUT_BYTES_CEILING}, what one worker frame holds")

    def to_json(self) -> dict[str, JSON]:
        """Every limit, as the journal header records it (replay rebuilds them from this)."""
        return {
            "fuel": self.fuel, "memory_bytes": self.memory_bytes,
            "max_state_bytes": self.max_state_bytes, "max_output_bytes": self.max_output_bytes,
            "max_messages": self.max_messages, "max_queued": self.max_queued,
            "max_tokens_per_step": self.max_tokens_per_step,
            "max_tokens_per_run": self.max_tokens_per_run,
            "timeout_s": float(self.timeout_s), "max_input_bytes": self.max_input_bytes,
        }


@dataclass(frozen=True, slots=True)
class StepRequest:
    """What an executor gets to run one agent for one step."""

    agent: str
    step: int
    state: JSON
    inbox: tuple[Message, ...]

    def to_json(self) -> dict[str, JSON]:
        return {"agent": self.agent, "step": self.step, "state": self.state,
                "inbox": [m.to_json() for m in self.inbox]}


@dataclass(frozen=True, slots=True)
class Fault:
    """A journaled fault. ``kind`` is one of the AgentFault subclasses' ``kind``."""

    kind: str
    detail: str
    data: Mapping[str, JSON] = field(default_factory=dict)

    def to_json(self) -> dict[str, JSON]:
        return {"kind": self.kind, "detail": self.detail, "data": dict(self.data)}


def limit_fault(limit: str, value: int, most: int, detail: str, **extra: JSON) -> Fault:
    """A ``limit`` fault: every one carries ``{"limit", "value", "max"}`` (and ``extra``),
    whichever executor or check found it."""
    return Fault("limit", detail, {"limit": limit, "value": value, "max": most, **extra})


@dataclass(frozen=True, slots=True)
class StepResult:
    """What an executor returns. On a fault, ``state``/``outbox`` are ignored."""

    state: JSON
    outbox: tuple[Outgoing, ...] = ()
    status: Status = "ready"
    fault: Fault | None = None
    # what the step used, for display (WebAssembly: fuel, memory); never journaled
    usage: Mapping[str, int] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """What the journal records about an agent: its kind, content hash and configuration."""

    kind: str  # "python", "wasm", ...
    hash: str  # hex digest of the code the agent runs
    config: Mapping[str, JSON] = field(default_factory=dict)

    def to_json(self) -> dict[str, JSON]:
        return {"kind": self.kind, "hash": self.hash, "config": dict(self.config)}


class HostCalls(Protocol):
    """Host functions one agent may call during one step. Every call is journaled.

    ``random`` and ``now`` are pure functions of (run seed, agent, step, call index);
    ``infer`` blocks until the inference barrier releases the step's batch. Calling a host
    function the agent was not granted raises :class:`~workbench.errors.CapabilityError`.
    """

    def infer(self, request: Mapping[str, JSON]) -> dict[str, JSON]: ...

    def log(self, text: str) -> None: ...

    def random(self) -> int: ...  # uniform in [0, 2**64)

    def now(self) -> int: ...  # logical nanoseconds

    def restart(self) -> None:
        """The executor is re-running this step from scratch (worker crash): calls made so
        far are served again from memory, in order, without reaching the engine twice."""
        ...


@runtime_checkable
class Executor(Protocol):
    """Runs one agent's step function. ``step`` is called from scheduler threads, one thread
    per running agent; different agents' steps run concurrently and must not block each other.
    """

    def identity(self) -> AgentIdentity: ...

    def step(self, request: StepRequest, host: HostCalls) -> StepResult: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class InferRequest:
    """One agent's generation request inside a barrier batch.

    ``sampling_key`` is derived from (run seed, agent, request index); with temperature 0
    decoding is greedy and the key is unused. Special-token text (``<|im_start|>``, ...) in
    ``messages`` or ``prompt`` is tokenized as plain text: control tokens come only from the
    chat template, or, for a raw ``prompt``, from its text when ``allow_special_tokens``.
    """

    agent: str
    index: int  # the agent's request counter over the run
    messages: tuple[Mapping[str, str], ...] | None = None  # chat messages, or
    prompt: str | None = None  # raw text, no chat template
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    sampling_key: int = 0
    allow_special_tokens: bool = False  # a raw prompt's special-token text is control tokens

    @staticmethod
    def from_json(agent: str, index: int, sampling_key: int,
                  body: Mapping[str, JSON]) -> InferRequest:
        """Validate an agent's ``infer`` payload. Raises ValueError naming the bad field."""
        if not isinstance(body, Mapping):
            raise ValueError("infer request must be a JSON object")
        unknown = set(body) - _INFER_FIELDS
        if unknown:
            raise ValueError(f"infer request has unknown fields {sorted(unknown)}")
        messages = body.get("messages")
        prompt = body.get("prompt")
        if (messages is None) == (prompt is None):
            raise ValueError("infer request needs exactly one of 'messages' or 'prompt'")
        msgs: tuple[Mapping[str, str], ...] | None = None
        if messages is not None:
            if not isinstance(messages, list) or not messages:
                raise ValueError("'messages' must be a non-empty list")
            for m in messages:
                if (not isinstance(m, Mapping) or not isinstance(m.get("role"), str)
                        or not isinstance(m.get("content"), str)):
                    raise ValueError("each message needs string 'role' and 'content'")
            msgs = tuple({"role": m["role"], "content": m["content"]} for m in messages)
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError("'prompt' must be a string")
        allow_special = body.get("allow_special_tokens", False)
        if not isinstance(allow_special, bool):
            raise ValueError("'allow_special_tokens' must be true or false")
        if allow_special and prompt is None:
            raise ValueError("'allow_special_tokens' applies to a raw 'prompt' only; with "
                             "'messages' control tokens come from the chat template")
        stop = body.get("stop", [])
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise ValueError("'stop' must be a list of non-empty strings")
        return InferRequest(
            agent=agent, index=index, messages=msgs, prompt=prompt,
            max_tokens=_number(body, "max_tokens", 64, int, 1, 1 << 20),
            temperature=_number(body, "temperature", 0.0, float, 0.0, 100.0),
            top_p=_number(body, "top_p", 1.0, float, 0.0, 1.0),
            top_k=_number(body, "top_k", 0, int, 0, 1 << 20),
            stop=tuple(stop), sampling_key=sampling_key, allow_special_tokens=allow_special,
        )

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"max_tokens": self.max_tokens, "temperature": self.temperature,
                                "top_p": self.top_p, "top_k": self.top_k,
                                "stop": list(self.stop)}
        if self.messages is not None:
            out["messages"] = [dict(m) for m in self.messages]
        else:
            out["prompt"] = self.prompt
        if self.allow_special_tokens:
            out["allow_special_tokens"] = True
        return out


_INFER_FIELDS = {"messages", "prompt", "max_tokens", "temperature", "top_p", "top_k", "stop",
                 "allow_special_tokens"}


def _number(body: Mapping[str, JSON], name: str, default: Any, kind: type, lo: float,
            hi: float) -> Any:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name!r} must be a number")
    if kind is int and not isinstance(value, int):
        raise ValueError(f"{name!r} must be an integer")
    if not lo <= value <= hi:
        raise ValueError(f"{name!r} must be between {lo} and {hi}, got {value}")
    return kind(value)


@dataclass(frozen=True, slots=True)
class InferResult:
    text: str
    tokens: tuple[int, ...]
    finish_reason: Literal["stop", "length", "error"]
    provider: str  # the execution provider that actually ran it, e.g. "CPUExecutionProvider"
    prompt_tokens: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {
            "text": self.text, "tokens": list(self.tokens), "finish_reason": self.finish_reason,
            "provider": self.provider, "prompt_tokens": self.prompt_tokens,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


TokenCallback = Callable[[str, int, int, str], None]
"""on_token(agent, request_index, token_id, text_piece): streaming, for observers only."""


class InferenceBackend(Protocol):
    """What the run needs from an engine. ``infer_batch`` gets requests in agent order and
    returns results in the same order; batching must not change any sequence's tokens."""

    def describe(self) -> dict[str, JSON]:
        """Model id and hash, provider, engine settings: journaled in the run header."""
        ...

    def infer_batch(self, requests: Sequence[InferRequest],
                    on_token: TokenCallback | None = None) -> list[InferResult]: ...

    def close(self) -> None: ...

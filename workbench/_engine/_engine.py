"""``Engine``: the ONNX Runtime inference backend of a run, also usable on its own.

The run's inference barrier calls :meth:`Engine.infer_batch` with one step's requests in agent
order; the engine splits them into groups of ``max_batch`` (in agent order), decodes each
group as one batch (``_decode.py``) and returns results in the same order. Every result names
the execution provider that actually produced it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import onnxruntime as ort
from tokenizers import Tokenizer

from .._types import JSON, InferRequest, InferResult, TokenCallback
from ..errors import ConfigError, ModelLoadError, RunClosed
from ._chat import render_chat_segments
from ._cpu import cpu_info
from ._decode import DecodeStats, Slot, run_group
from ._model import ModelFiles
from ._providers import EventCallback, SessionOpener, candidate_providers, default_opener
from ._rowprobe import one_row_is_exact
from ._sampling import SamplingParams, TextStream
from ._session import EngineSession, ProviderRunError
from ._tokenizer import PromptEncoder

__all__ = ["DEFAULT_MODEL", "Engine", "Generation"]

DEFAULT_MODEL = "smollm2-135m-instruct"
MAX_BATCH_LIMIT = 256


@dataclass(frozen=True)
class Generation:
    """What :meth:`Engine.generate` returns. ``str(g)`` is the text."""

    text: str
    tokens: tuple[int, ...]
    finish_reason: Literal["stop", "length", "error"]
    provider: str
    prompt_tokens: int
    prefill_s: float
    decode_s: float

    @property
    def decode_tokens_per_s(self) -> float:
        """Generated tokens after the first, per second of decode time."""
        steps = max(len(self.tokens) - 1, 0)
        return steps / self.decode_s if self.decode_s > 0 else 0.0

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return (f"Generation({text!r}, tokens={len(self.tokens)}, "
                f"finish={self.finish_reason!r}, provider={self.provider!r}, "
                f"prompt_tokens={self.prompt_tokens}, prefill={self.prefill_s * 1e3:.1f} ms, "
                f"decode={self.decode_tokens_per_s:.1f} tok/s)")


class Engine:
    """An ONNX Runtime decoder with provider fallback, batching and seeded sampling.

    ``model`` is a registry name, a path (resolved by the model store, converting a GGUF once)
    or :class:`ModelFiles`. ``providers`` is the order to try (default: every provider this
    onnxruntime build offers, GPU first); ``strict_provider=True`` raises
    :class:`~workbench.errors.ProviderError` instead of falling back. ``threads`` is the fixed
    intra-op thread count and ``prefill_chunk`` (None: one pass) the prefill split.
    ``min_decode_rows`` pads every decode step to at least that many rows, which keeps a
    sequence's tokens independent of its batch: ``None`` (default) checks at load whether
    this CPU's one-row kernels round like the batched ones for this graph (``_rowprobe``)
    and uses 1 if they do (about a quarter faster for a lone sequence), else 2; 2 is exact
    everywhere; 1 without the check may let a lone sequence round differently
    (docs/engine.md). All three are part of :meth:`describe` because results depend on
    them.
    ``on_event(kind, data)`` receives warnings such as ``provider_fallback``; ``opener``
    opens sessions (a seam for tests that inject provider failures). Raises
    :class:`ModelLoadError` for a model that cannot be loaded and :class:`ConfigError` for
    impossible settings.
    """

    def __init__(self, model: str | Path | ModelFiles = DEFAULT_MODEL, *,
                 providers: Sequence[str] | None = None, strict_provider: bool = False,
                 threads: int = 2, max_batch: int = 8, variant: str | None = None,
                 prefill_chunk: int | None = None, min_decode_rows: int | None = None,
                 on_event: EventCallback | None = None,
                 opener: SessionOpener = default_opener) -> None:
        _check_settings(threads, max_batch, prefill_chunk, min_decode_rows)
        started = time.perf_counter()
        self.files = model if isinstance(model, ModelFiles) else _resolve(model, variant)
        self.threads, self.max_batch, self.prefill_chunk = threads, max_batch, prefill_chunk
        self.strict_provider = strict_provider
        self._on_event = on_event
        self._tokenizer = _load_tokenizer(self.files)
        self._prompts = PromptEncoder(self._tokenizer)
        self._session = EngineSession(
            self.files.onnx_path, candidates=candidate_providers(providers, strict_provider),
            threads=threads, strict=strict_provider, opener=opener, on_event=on_event,
            vocab_hint=self.files.config.vocab_size)
        self.min_decode_rows = (min_decode_rows if min_decode_rows is not None
                                else self._decode_rows_floor())
        self._lock = threading.Lock()
        self._closed = False
        self._last_provider = self._session.provider
        self.load_s = time.perf_counter() - started
        self.last_stats = DecodeStats()
        self.last_timings: dict[tuple[str, int], tuple[float, float]] = {}
        """(agent, request index) -> (prefill s, decode s) of the last infer_batch call."""

    # --- the InferenceBackend protocol ---------------------------------------------------

    @property
    def provider(self) -> str:
        """The execution provider that runs the model now (or ran it, once closed)."""
        return self._last_provider if self._closed else self._session.provider

    def describe(self) -> dict[str, JSON]:
        """Model id and hash, variant, provider, the settings results depend on, and the CPU
        (its instruction sets decide onnxruntime's kernels, see :func:`cpu_info`)."""
        return {
            "engine": "workbench-onnx", "model": self.files.model_id,
            "model_hash": self.files.model_hash, "variant": self.files.variant,
            "provider": self.provider, "threads": self.threads, "max_batch": self.max_batch,
            "prefill_chunk": self.prefill_chunk, "min_decode_rows": self.min_decode_rows,
            "onnxruntime": ort.__version__,
            "kv_cache": "shared" if self._session.layout.shared_kv else "growing",
            "cpu": cpu_info(),
        }

    def infer_batch(self, requests: Sequence[InferRequest],
                    on_token: TokenCallback | None = None) -> list[InferResult]:
        """Results for ``requests``, in their order. A request that cannot run (bad chat
        template, prompt too long) gets ``finish_reason="error"``; a provider failure with
        nothing left to fall back to raises :class:`~workbench.errors.ProviderError`."""
        return self._infer(requests, on_token)[0]

    def _infer(self, requests: Sequence[InferRequest], on_token: TokenCallback | None
               ) -> tuple[list[InferResult], DecodeStats]:
        with self._lock:
            self._check_open()
            results: list[InferResult | None] = [None] * len(requests)
            ready: list[tuple[int, Slot]] = []
            for i, request in enumerate(requests):
                prepared = self._prepare(request)
                if isinstance(prepared, InferResult):
                    results[i] = prepared
                else:
                    ready.append((i, prepared))
            self.last_stats = DecodeStats()
            self.last_timings = {}
            for start in range(0, len(ready), self.max_batch):
                group = ready[start:start + self.max_batch]
                provider = self._run(
                    [slot for _, slot in group], on_token)
                for i, slot in group:
                    results[i] = _result(slot, provider)
                    key = (slot.request.agent, slot.request.index)
                    self.last_timings[key] = (slot.prefill_s, slot.decode_s)
            return [r for r in results if r is not None], self.last_stats

    def close(self) -> None:
        """Release the session. Idempotent; later inference raises RunClosed."""
        with self._lock:
            if not self._closed:
                self._last_provider = self._session.provider
                self._closed = True
                self._session.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- direct use ----------------------------------------------------------------------

    def generate(self, messages_or_prompt: str | Sequence[Mapping[str, str]], *,
                 max_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
                 top_k: int = 0, stop: Sequence[str] = (), seed: int = 0,
                 allow_special_tokens: bool = False,
                 on_token: TokenCallback | None = None) -> Generation:
        """Generate for one chat (list of {"role", "content"}) or raw prompt string.

        ``seed`` is the sampling key (unused when ``temperature == 0``, greedy). Special-token
        text in messages is plain text; in a raw prompt too, unless ``allow_special_tokens``
        (then ``"<|im_start|>"`` in the prompt is the control token).
        """
        if isinstance(messages_or_prompt, str):
            messages, prompt = None, messages_or_prompt
        else:
            messages, prompt = tuple(dict(m) for m in messages_or_prompt), None
            if allow_special_tokens:
                raise ConfigError("allow_special_tokens applies to a raw prompt string only; "
                                  "with messages, control tokens come from the chat template")
        request = InferRequest(agent="generate", index=0, messages=messages, prompt=prompt,
                               max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                               top_k=top_k, stop=tuple(stop), sampling_key=seed,
                               allow_special_tokens=allow_special_tokens)
        [result], stats = self._infer([request], on_token)
        if result.error is not None:
            raise ConfigError(result.error)
        return Generation(result.text, result.tokens, result.finish_reason, result.provider,
                          result.prompt_tokens, stats.prefill_s, stats.decode_s)

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.provider
        return (f"Engine({self.files.model_id!r}, variant={self.files.variant!r}, {state}, "
                f"threads={self.threads}, max_batch={self.max_batch})")

    # --- internals -----------------------------------------------------------------------

    def _decode_rows_floor(self) -> int:
        """1 when a lone row is exact here (CPU provider, every MatMulNBits configuration of
        the graph probed), else 2. Part of describe(): it decides kernels, not tokens."""
        if self._session.provider != "CPUExecutionProvider":
            return 2
        exact = one_row_is_exact(self._session.scan.matmul_nbits, self.threads)
        return 1 if exact else 2

    def _check_open(self) -> None:
        if self._closed:
            raise RunClosed("engine")

    def _prepare(self, request: InferRequest) -> Slot | InferResult:
        """Tokenise and validate one request; an unusable request becomes an error result."""
        try:
            prompt = self._encode(request)
            params = SamplingParams(request.temperature, request.top_k, request.top_p,
                                    request.sampling_key)
        except (ConfigError, ValueError) as exc:
            return InferResult("", (), "error", self.provider, 0, str(exc))
        limit = self.files.config.max_position
        if not prompt or len(prompt) >= limit or request.max_tokens < 1:
            reason = (f"prompt has {len(prompt)} tokens and max_tokens={request.max_tokens}; "
                      f"the model holds at most {limit} positions: shorten the prompt")
            return InferResult("", (), "error", self.provider, len(prompt), reason)
        capacity = min(len(prompt) + request.max_tokens, limit)
        return Slot(request, prompt, params, self._stream(request), capacity)

    def _encode(self, request: InferRequest) -> list[int]:
        """Prompt token ids. Control tokens come only from the chat template (text inside
        messages is text), or from a raw prompt with ``allow_special_tokens``. A chat template
        that writes the BOS token itself does not get a second one from the tokenizer."""
        if request.messages is None:
            return self._prompts.encode(request.prompt or "",
                                        allow_special=request.allow_special_tokens)
        bos, eos = self._special(self.files.config.bos_token_id), self._special(
            next(iter(self.files.config.eos_token_ids), None))
        segments = render_chat_segments(self.files.chat_template, request.messages,
                                        special=self._prompts.special, bos_token=bos,
                                        eos_token=eos)
        starts_with_bos = bool(bos) and bool(segments) and segments[0] == (True, bos)
        return self._prompts.encode_segments(segments, add_special_tokens=not starts_with_bos)

    def _special(self, token_id: int | None) -> str:
        if token_id is None:
            return ""
        return str(self._tokenizer.id_to_token(token_id) or "")

    def _stream(self, request: InferRequest) -> TextStream:
        decode = self._tokenizer.decode
        return TextStream(lambda ids: str(decode(list(ids), skip_special_tokens=True)),
                          request.stop)

    def _run(self, slots: list[Slot], on_token: TokenCallback | None) -> str:
        """Decode one group; on a provider failure switch provider and run it again."""
        while True:
            try:
                stats = run_group(self._session, slots, eos=self.files.config.eos_token_ids,
                                  on_token=on_token, prefill_chunk=self.prefill_chunk,
                                  min_rows=self.min_decode_rows)
            except ProviderRunError as exc:
                self._session.fall_back(exc)
                self._emit("stream_restart", {"agents": [s.request.agent for s in slots],
                                              "provider": self.provider})
                for slot in slots:
                    slot.reset(self._stream(slot.request))
                continue
            _add_stats(self.last_stats, stats)
            return self.provider

    def _emit(self, kind: str, data: Mapping[str, Any]) -> None:
        if self._on_event is not None:
            with contextlib.suppress(Exception):  # an observer must never break inference
                self._on_event(kind, data)


def _check_settings(threads: int, max_batch: int, prefill_chunk: int | None,
                    min_decode_rows: int | None) -> None:
    if not 1 <= threads <= 1024:
        raise ConfigError(f"threads must be between 1 and 1024, got {threads}")
    if not 1 <= max_batch <= MAX_BATCH_LIMIT:
        raise ConfigError(f"max_batch must be between 1 and {MAX_BATCH_LIMIT}, got {max_batch}")
    if prefill_chunk is not None and prefill_chunk < 1:
        raise ConfigError(f"prefill_chunk must be None or >= 1, got {prefill_chunk}")
    if min_decode_rows is not None and not 1 <= min_decode_rows <= MAX_BATCH_LIMIT:
        raise ConfigError(f"min_decode_rows must be None or between 1 and {MAX_BATCH_LIMIT}, "
                          f"got {min_decode_rows} (None checks this CPU; 2 is exact everywhere)")


def _resolve(model: str | Path, variant: str | None) -> ModelFiles:
    from ._store import resolve_model

    if variant is None:
        return resolve_model(model)
    return resolve_model(model, variant=variant)


def _load_tokenizer(files: ModelFiles) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(files.tokenizer_path))
    except Exception as exc:  # tokenizers raises plain Exception
        raise ModelLoadError(str(files.tokenizer_path), f"unreadable tokenizer ({exc})") from exc


def _result(slot: Slot, provider: str) -> InferResult:
    finish = slot.finish or "length"
    return InferResult(slot.stream.text, tuple(slot.tokens), finish, provider, len(slot.prompt))


def _add_stats(total: DecodeStats, part: DecodeStats) -> None:
    total.prefill_s += part.prefill_s
    total.prefill_tokens += part.prefill_tokens
    total.decode_s += part.decode_s
    total.decode_steps += part.decode_steps
    total.decode_tokens += part.decode_tokens

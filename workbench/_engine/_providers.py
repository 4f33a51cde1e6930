"""Execution providers: which ones to try, in what order, and what happens when one fails.

A provider is tried by opening a session on it and reading back ``session.get_providers()[0]``:
``onnxruntime.get_available_providers()`` only says what the wheel was built with, so
onnxruntime-gpu without the CUDA libraries lists ``CUDAExecutionProvider``, logs a load
failure and silently runs on the CPU. That silent case counts as a failure here.

On a failure the next provider is tried and a ``provider_fallback`` warning event goes to the
engine's ``on_event`` callback; with ``strict_provider=True`` a :class:`ProviderError` is
raised instead. The same applies when a session fails at run time (:class:`ProviderChain`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import onnxruntime as ort

from ..errors import ConfigError, ProviderError

__all__ = [
    "CPU",
    "PREFERENCE",
    "EventCallback",
    "OpenedSession",
    "ProviderChain",
    "SessionOpener",
    "candidate_providers",
    "device_of",
    "open_with_fallback",
]

CPU = "CPUExecutionProvider"

PREFERENCE: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    CPU,
)
"""Providers in the order the engine tries them when none are named."""

_DEVICE_BOUND = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}

EventCallback = Callable[[str, Mapping[str, Any]], None]
"""on_event(kind, data): warnings and notices for observers (never raises into the engine)."""


class OrtSession(Protocol):
    """The part of ``onnxruntime.InferenceSession`` the engine uses (a seam for tests)."""

    def get_providers(self) -> list[str]: ...

    def get_inputs(self) -> list[Any]: ...

    def get_outputs(self) -> list[Any]: ...

    def io_binding(self) -> Any: ...

    def run_with_iobinding(self, iobinding: Any, run_options: Any = None) -> None: ...

    def run(self, output_names: list[str] | None, input_feed: dict[str, Any],
            run_options: Any = None) -> list[Any]: ...


SessionOpener = Callable[[Path, "ort.SessionOptions", str], OrtSession]
"""opener(onnx_path, options, provider) -> session; may raise on a provider failure."""


def default_opener(path: Path, options: ort.SessionOptions, provider: str) -> OrtSession:
    """Open ``path`` on ``provider`` (onnxruntime adds the CPU provider behind it).

    Raises RuntimeError at once for a provider this onnxruntime build does not offer.
    """
    if provider not in ort.get_available_providers():
        raise RuntimeError(f"this onnxruntime build ({ort.__version__}, device "
                           f"{ort.get_device()}) does not offer {provider}")
    session: OrtSession = ort.InferenceSession(str(path), options, providers=[provider])
    return session


def device_of(provider: str) -> str:
    """Where the KV cache and logits live for ``provider``: ``"cuda"`` or ``"cpu"``."""
    return _DEVICE_BOUND.get(provider, "cpu")


def candidate_providers(requested: Sequence[str] | None, strict: bool) -> list[str]:
    """The providers to try, in order.

    ``requested=None`` means every provider of :data:`PREFERENCE` that this onnxruntime build
    lists. A requested list is tried as given; unless ``strict``, the CPU provider is appended
    as the last resort. Raises :class:`ConfigError` for a name onnxruntime does not know.
    """
    known = set(ort.get_all_providers())
    if requested is None:
        available = set(ort.get_available_providers())
        return [p for p in PREFERENCE if p in available]
    if not requested:
        raise ConfigError("providers=[] names no execution provider; pass None for the default")
    for name in requested:
        if name not in known:
            raise ConfigError(f"unknown execution provider {name!r}; choose from {PREFERENCE}")
    chosen = list(dict.fromkeys(requested))
    if not strict and CPU not in chosen:
        chosen.append(CPU)
    return chosen


@dataclass(frozen=True)
class OpenedSession:
    """A session and the provider that actually runs it."""

    session: OrtSession
    provider: str
    index: int  # position of ``provider`` in the candidate list


def open_with_fallback(path: Path, options_for: Callable[[], ort.SessionOptions],
                       candidates: Sequence[str], *, start: int = 0, strict: bool = False,
                       opener: SessionOpener = default_opener,
                       on_event: EventCallback | None = None) -> OpenedSession:
    """Open a session on the first candidate (from ``start``) that really runs it.

    Raises :class:`ProviderError` when ``strict`` and the first candidate fails, or when every
    candidate fails (the error names the last failure).
    """
    reason = "no execution provider to try"
    for index in range(start, len(candidates)):
        provider = candidates[index]
        try:
            session = opener(path, options_for(), provider)
            actual = session.get_providers()[0]
        except Exception as exc:  # onnxruntime raises several unrelated types here
            reason = f"{type(exc).__name__}: {exc}"
        else:
            if actual == provider:
                return OpenedSession(session, provider, index)
            reason = (f"onnxruntime fell back to {actual} on its own (are the {provider} "
                      "libraries installed?)")
        if strict:
            raise ProviderError(provider, reason)
        if index + 1 < len(candidates):
            _warn(on_event, provider, candidates[index + 1], reason, "load")
    raise ProviderError(candidates[-1] if candidates else "(none)", reason)


class ProviderChain:
    """The current session plus the candidates left behind it, for run-time fallback."""

    def __init__(self, path: Path, options_for: Callable[[], ort.SessionOptions],
                 candidates: Sequence[str], *, strict: bool, opener: SessionOpener,
                 on_event: EventCallback | None) -> None:
        self._path = path
        self._options_for = options_for
        self._candidates = list(candidates)
        self._strict = strict
        self._opener = opener
        self._on_event = on_event
        self.current = open_with_fallback(path, options_for, self._candidates, strict=strict,
                                          opener=opener, on_event=on_event)

    @property
    def provider(self) -> str:
        return self.current.provider

    def release(self) -> None:
        """Forget the session; using the chain afterwards raises ValueError."""
        self.current = OpenedSession(_ClosedSession(), self.current.provider, self.current.index)

    def fall_back(self, error: BaseException) -> OpenedSession:
        """Replace the current session after it failed at run time with ``error``.

        Raises :class:`ProviderError` when strict, or when no provider is left after it.
        """
        failed = self.current
        reason = f"{type(error).__name__}: {error}"
        nxt = failed.index + 1
        if self._strict:
            raise ProviderError(failed.provider, f"failed at run time: {reason}") from error
        if nxt >= len(self._candidates):
            raise ProviderError(failed.provider, f"failed at run time with no provider left "
                                f"to fall back to: {reason}") from error
        _warn(self._on_event, failed.provider, self._candidates[nxt], reason, "run")
        self.current = open_with_fallback(self._path, self._options_for, self._candidates,
                                          start=nxt, opener=self._opener,
                                          on_event=self._on_event)
        return self.current


class _ClosedSession:
    """Stands in for a released session: every use raises ValueError."""

    def __getattr__(self, name: str) -> Any:
        raise ValueError("engine already closed")

    def get_providers(self) -> list[str]:
        raise ValueError("engine already closed")


def _warn(on_event: EventCallback | None, failed: str, nxt: str, reason: str,
          when: str) -> None:
    if on_event is None:
        return
    with contextlib.suppress(Exception):  # an observer must never break inference
        on_event("provider_fallback", {"failed": failed, "next": nxt, "reason": reason,
                                       "when": when})

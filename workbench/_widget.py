"""The notebook view of a run: one anywidget, `RunView` (docs/views.md).

The kernel side keeps a :class:`~workbench._viewdoc.ViewDoc` fed by a subscription to the
run's events (``since=0``: a view attached late shows the whole run), and a flusher thread
that sends what changed as coalesced deltas (at most ``MAX_DELTAS_PER_S`` per view) and
rewrites the ``doc`` traitlet (what a saved notebook keeps) at most every ``DOC_INTERVAL_S``
seconds, and at once when the run pauses, finishes or rewinds. Messages from the front end
are untrusted: each is checked against its schema, anything else gets an error reply, and no
exception escapes the handler.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from workbench._events import Event, RunFinished, Subscription
from workbench._viewdoc import ViewDoc, doc_from_journal, journal_title, summary_line

if TYPE_CHECKING:
    from workbench._run import Run

__all__ = ["MAX_DELTAS_PER_S", "RunView", "view"]

STATIC = Path(__file__).parent / "static"
MAX_DELTAS_PER_S = 20
"""Deltas a view sends per second at most (Jupyter Server drops all kernel output above
about 1,000 messages per second, shared by every view on the kernel)."""
DOC_INTERVAL_S = 2.0
"""How often at most the ``doc`` traitlet is rewritten while a run is going (less often for
a document that takes longer than a twentieth of that to send)."""
MAX_FORKS = 16
"""Forks a view keeps (``view.forks``), oldest dropped."""
_ACTIONS = ("run", "pause", "step")
_MAX_ID = 2**53


def _esm() -> str | Path:
    bundle = STATIC / "views.js"
    if bundle.is_file():
        return bundle
    return ("export default { render({ el }) { el.textContent = "
            "'The workbench views bundle is missing from this installation.'; } };")


class _Invalid(Exception):
    """A front-end message that does not fit its schema."""


def _int_field(msg: Mapping[str, Any], key: str, *, low: int, high: int) -> int:
    v = msg.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
        raise _Invalid(f"{key!r} must be an integer from {low} to {high}")
    return v


def _check(msg: Any) -> tuple[str, int | None, dict[str, Any]]:
    """The request's type, id and arguments; _Invalid if it does not fit a schema."""
    if not isinstance(msg, dict):
        raise _Invalid("a request must be a JSON object")
    raw_id = msg.get("id")
    if raw_id is not None and (not isinstance(raw_id, int) or isinstance(raw_id, bool)
                               or not 0 <= raw_id < _MAX_ID):
        raise _Invalid("'id' must be a non-negative integer")
    kind = msg.get("type")
    allowed = {"hello": {"type", "id"}, "control": {"type", "id", "action"},
               "rewind": {"type", "id", "step"}, "fork": {"type", "id", "step"}}
    if not isinstance(kind, str) or kind not in allowed:
        raise _Invalid(f"unknown request type; expected one of {sorted(allowed)}")
    extra = set(msg) - allowed[kind]
    if extra:
        raise _Invalid(f"unexpected field(s) {sorted(map(str, extra))[:5]} in {kind!r}")
    args: dict[str, Any] = {}
    if kind == "control":
        action = msg.get("action")
        if action not in _ACTIONS:
            raise _Invalid(f"'action' must be one of {list(_ACTIONS)}")
        args["action"] = action
    elif kind in ("rewind", "fork"):
        args["step"] = _int_field(msg, "step", low=-1, high=_MAX_ID)
    return kind, raw_id, args


class RunView(anywidget.AnyWidget):
    """The live views of a run (or of a journal, with ``RunView.of_journal``).

    ``doc`` is the view document (docs/views.md). ``forks`` holds the runs made with the
    view's "fork here" button; ``request_errors`` counts requests answered with an error.
    """

    _esm = _esm()
    doc = traitlets.Dict().tag(sync=True)

    def __init__(self, run: Run | None = None, *, document: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._run = run
        self._lock = threading.Lock()  # the document
        self._flush_lock = threading.Lock()  # one sender at a time: deltas go out in order
        self._busy = False  # a control request is being carried out
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._sub: Subscription | None = None
        self._flusher: threading.Thread | None = None
        self.forks: list[Run] = []
        self.request_errors = 0
        self.messages_sent = 0  # messages sent to the front end (deltas, documents, replies)
        self.on_msg(self._on_msg)
        if run is None:
            self._vd = None
            self.doc = document or {}
            return
        self._vd = ViewDoc(run.header, source="live",
                           title=journal_title(run.journal.path))
        self._vd.set_status(run.activity)
        self._vd.preload(*run.events.timings())  # steps that ran before the view existed
        self.doc = self._vd.take_document()
        self._doc_written: tuple[int, Any] = (self.doc["seq"], self.doc["status"])
        self._last_doc = time.monotonic()
        self._doc_interval = DOC_INTERVAL_S
        self._sub = run.subscribe(self._on_event, since=0)
        self._flusher = threading.Thread(target=self._flush_loop, name="workbench-view",
                                         daemon=True)
        self._flusher.start()

    @classmethod
    def of_journal(cls, path: str | os.PathLike[str]) -> RunView:
        """A view of a finished journal: graph, timeline (logical clock), slider and
        inspector; no controls."""
        return cls(document=doc_from_journal(path))

    # -- kernel side ---------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        vd = self._vd
        assert vd is not None
        with self._lock:
            if event.kind == "run_started" and self._run is not None:
                vd.set_header(self._run.header)
            vd.apply(event)
            urgent = vd.reset or isinstance(event, RunFinished) or event.kind == "rewound"
        if urgent:
            self._wake.set()

    def _flush_loop(self) -> None:
        interval = 1.0 / MAX_DELTAS_PER_S
        while not self._stop.is_set():
            self._wake.wait(interval)
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                self._flush(force_doc=woken)
            except Exception:  # a closed comm (the widget was closed meanwhile)
                if self._stop.is_set():
                    return
            if self._run is not None and self._run.activity == "closed":
                self._finish()
                return
            time.sleep(interval)  # at most MAX_DELTAS_PER_S, however often woken

    def settle(self, timeout: float = 5.0) -> None:
        """Take in every event the run has sent so far and bring the front end and the
        saved ``doc`` up to date now (the run calls this when ``run()`` or ``wait()``
        returns, so a notebook cell that ends there saves the whole run)."""
        if self._sub is not None and not self._stop.is_set():
            self._sub.flush(timeout)
            self._flush(force_doc=True)

    def _flush(self, *, force_doc: bool = False) -> None:
        with self._flush_lock:
            self._flush_now(force_doc)

    def _flush_now(self, force_doc: bool) -> None:
        vd = self._vd
        if vd is None or self.comm is None:
            return
        run = self._run
        with self._lock:
            if run is not None:
                activity = run.activity
                before = vd.status["state"]
                if before != "finished" or activity in ("running", "pausing", "paused"):
                    vd.set_status(activity)
                force_doc = force_doc or vd.status["state"] != before  # paused, closed ...
            if vd.reset:
                doc = vd.take_document()
                msg: dict[str, Any] | None = {"type": "doc", "doc": doc}
            else:
                msg = vd.take_delta()
                doc = None
            now = time.monotonic()
            if doc is None and (msg is not None or force_doc) and (
                    now - self._last_doc >= self._doc_interval or force_doc):
                doc = vd.document()
        if msg is not None:
            self._post(msg)
        if doc is not None and (doc["seq"], doc["status"]) != self._doc_written:
            self.doc = doc  # serialised and sent whole: a large document takes a while
            self._doc_written = (doc["seq"], doc["status"])
            self._last_doc = time.monotonic()
            # rewrite a document that takes long to send less often: at most 5% of the time
            self._doc_interval = max(DOC_INTERVAL_S, 20 * (self._last_doc - now))

    def _finish(self) -> None:
        """The run closed: send what is left and stop."""
        if self._vd is not None:
            with self._lock:
                self._vd.set_status("closed")
            self._flush(force_doc=True)
        self._stop.set()
        if self._sub is not None:
            self._sub.close()

    def _post(self, msg: dict[str, Any]) -> None:
        self.send(msg)
        self.messages_sent += 1

    def close(self) -> None:
        """Stop following the run and close the widget."""
        stop: threading.Event | None = getattr(self, "_stop", None)
        if stop is not None:  # (ipywidgets may close a widget whose __init__ failed)
            stop.set()
            if self._sub is not None:
                self._sub.close()
            flusher = self._flusher
            if flusher is not None and flusher is not threading.current_thread():
                flusher.join(timeout=5)
        super().close()

    # -- requests from the front end ------------------------------------------------------

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        try:
            self._handle(content)
        except Exception as exc:  # never let anything escape into the kernel
            self.request_errors += 1
            with contextlib.suppress(Exception):
                self._reply(None, False, f"internal error: {type(exc).__name__}: {exc}")

    def _handle(self, content: Any) -> None:
        raw_id = content.get("id") if isinstance(content, dict) else None
        msg_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
        try:
            kind, msg_id, args = _check(content)
        except _Invalid as exc:
            self.request_errors += 1
            self._reply(msg_id if msg_id is not None and 0 <= msg_id < _MAX_ID else None,
                        False, str(exc))
            return
        if kind == "hello":
            self._hello(msg_id)
            return
        if self._run is None:
            self._reply(msg_id, False, "this view shows a journal: there is no run to control")
            return
        with self._lock:
            if self._busy:
                self._reply(msg_id, False, "the previous request is still being carried out")
                return
            self._busy = True
        threading.Thread(target=self._carry_out, args=(kind, msg_id, args),
                         name="workbench-view-request", daemon=True).start()

    def _hello(self, msg_id: int | None) -> None:
        vd = self._vd
        if vd is None:
            self._post({"type": "doc", "doc": self.doc})
        else:
            with self._lock:
                doc = vd.take_document()
            self._post({"type": "doc", "doc": doc})
        self._reply(msg_id, True, None)

    def _carry_out(self, kind: str, msg_id: int | None, args: dict[str, Any]) -> None:
        try:
            result = self._request(kind, args)
        except Exception as exc:
            self.request_errors += 1
            self._reply(msg_id, False, f"{type(exc).__name__}: {exc}")
        else:
            self._reply(msg_id, True, None, result)
        finally:
            with self._lock:
                self._busy = False
            self._wake.set()

    def _request(self, kind: str, args: dict[str, Any]) -> Any:
        run = self._run
        assert run is not None
        if kind == "control":
            return _control(run, args["action"])
        if kind == "rewind":
            _settle(run)
            run.rewind(args["step"])
            return {"step": args["step"]}
        _settle(run)
        child = run.fork(at=args["step"])
        self.forks.append(child)
        del self.forks[:-MAX_FORKS]
        return {"journal": child.journal.path, "at": args["step"]}

    def _reply(self, msg_id: int | None, ok: bool, error: str | None,
               result: Any = None) -> None:
        self._post({"type": "reply", "id": msg_id, "ok": ok, "error": error,
                    "result": result})

    def snapshot(self) -> dict[str, Any]:
        """The view document as of now (what ``doc`` will hold at its next rewrite)."""
        if self._vd is None:
            return dict(self.doc)
        with self._lock:
            if self._run is not None:
                self._vd.set_status(self._run.activity)
            return self._vd.document()

    # -- display ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        doc = self.doc
        if not doc:
            return "<RunView (empty)>"
        return f"<RunView of {doc.get('title') or 'a run'}: {summary_line(doc)}>"


def _settle(run: Run) -> None:
    """Collect a background driver that finished (re-raising its error), so that the run
    can be stepped, rewound or forked. A paused run can be as it is (``resume()`` goes on
    from there)."""
    if run.activity == "finished":
        run.wait()


def _control(run: Run, action: str) -> Any:
    activity = run.activity
    if action == "pause":
        if activity not in ("running", "pausing"):
            raise RuntimeError(f"the run is {activity}, not running")
        run.pause()
        return {"activity": run.activity}
    if action == "run":
        if activity == "paused":
            run.resume()
            return {"activity": run.activity}
        _settle(run)
        if run.activity != "idle":
            raise RuntimeError(f"the run is {run.activity}")
        run.start()
        return {"activity": run.activity}
    if activity in ("running", "pausing"):
        raise RuntimeError(f"the run is {activity}: pause it first")
    _settle(run)
    report = run.step()
    return {"step": None if report is None else report.step}


def view(source: Run | str | os.PathLike[str]) -> RunView:
    """The views of a run (live) or of a journal file (finished, no model needed)."""
    from workbench._run import Run

    if isinstance(source, Run):
        return RunView(source)
    return RunView.of_journal(source)



"""Starting worker processes: a fork server that has already imported wasmtime.

Each :class:`~workbench._wasm._pool.WorkerPool` starts its own fork server (and starts it
again if it dies, and stops it when the pool closes): a fresh Python interpreter that imports
wasmtime and the sandbox once (about 0.2 s), then forks a worker for each request, in
milliseconds instead of the ~70 ms a fresh interpreter needs. Unlike ``multiprocessing``'s
forkserver it never re-imports the user's ``__main__`` (scripts need no ``if __name__`` guard)
and a worker inherits no descriptor of the kernel but its own socket.

Protocol (a SOCK_SEQPACKET socket pair, one JSON message per packet): the kernel sends
``{"id", "args"}`` with the worker's socket attached (SCM_RIGHTS); the server answers
``{"id", "pid"}`` and later ``{"exited": pid, "code": c}`` (a negative code is the signal)
when it reaps the worker. The server is single-threaded (so forking it is safe), ignores
SIGINT (a Ctrl-C meant for the kernel must not kill workers) and exits when the kernel's end
of the socket closes; workers exit when their own socket closes.

``start_method="spawn"`` starts each worker as a fresh interpreter instead (for comparison).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections import OrderedDict
from typing import Any, Protocol

__all__ = ["ForkServer", "Launcher", "SpawnLauncher", "WorkerProcess"]

PRELOAD = ("wasmtime", "workbench._wasm._worker", "workbench._wasm._sandbox")
"""Modules the fork server imports once, before forking any worker."""
START_TIMEOUT_S = 30.0
"""How long to wait for the fork server to report a new worker's pid."""
MAX_EXITS = 4096
"""Exit statuses kept for workers nobody has asked about yet (oldest dropped first)."""
_MAX_PACKET = 65536
_BOOT = ("import sys, json; sys.path[:0] = json.loads(sys.argv[1]); "
         "from workbench._wasm import _forkserver as f; f.{entry}(int(sys.argv[2]))")


class WorkerProcess(Protocol):
    pid: int

    def wait(self, timeout: float) -> int | None:
        """The exit code (negative: killed by that signal), or None if still running or
        unknown (its fork server died)."""
        ...

    def kill(self) -> None:
        """SIGKILL it, unless it is known to be gone (its pid may then be reused)."""
        ...


class Launcher(Protocol):
    def start(self, sock: socket.socket, args: dict[str, Any]) -> WorkerProcess:
        """Start a worker serving ``sock``. Raises OSError if it cannot be started."""
        ...


# -- kernel side ----------------------------------------------------------------------------


class _Forked:
    def __init__(self, server: ForkServer, pid: int) -> None:
        self._server = server
        self.pid = pid

    def wait(self, timeout: float) -> int | None:
        return self._server.wait_exit(self.pid, timeout)

    def kill(self) -> None:
        if self._server.may_signal(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


class ForkServer:
    """The kernel's handle on one fork server process (its owner closes it).

    ``start`` raises OSError once the server has died (``alive`` is then False): start a new
    one."""

    def __init__(self) -> None:
        self._ctrl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = _python("serve", theirs)
        except BaseException:
            self._ctrl.close()
            raise
        finally:
            theirs.close()
        self.pid = self._proc.pid
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._pids: dict[int, int] = {}
        self._exits: OrderedDict[int, int] = OrderedDict()
        self._ids = 0
        self.alive = True
        self._thread = threading.Thread(target=self._read_loop, daemon=True,
                                        name="workbench-forkserver-reader")
        self._thread.start()

    def start(self, sock: socket.socket, args: dict[str, Any]) -> WorkerProcess:
        with self._send_lock:
            self._ids += 1
            ident = self._ids
            message = json.dumps({"id": ident, "args": args}).encode("utf-8")
            socket.send_fds(self._ctrl, [message], [sock.fileno()])
        with self._cond:
            if not self._cond.wait_for(lambda: ident in self._pids or not self.alive,
                                       START_TIMEOUT_S):
                raise OSError(f"the fork server did not start a worker in {START_TIMEOUT_S} s")
            if ident not in self._pids:
                raise OSError("the fork server died while starting a worker")
            return _Forked(self, self._pids.pop(ident))

    def may_signal(self, pid: int) -> bool:
        """Whether ``pid`` is still this server's child (running or not yet reaped)."""
        with self._cond:
            return self.alive and pid not in self._exits

    def wait_exit(self, pid: int, timeout: float) -> int | None:
        with self._cond:
            self._cond.wait_for(lambda: pid in self._exits or not self.alive, timeout)
            return self._exits.pop(pid, None)

    def close(self) -> None:
        """Stop the fork server (its workers live until their sockets close). Idempotent."""
        with contextlib.suppress(OSError):
            self._ctrl.shutdown(socket.SHUT_RDWR)
        try:
            self._proc.wait(5.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._thread.join()
        self._ctrl.close()

    def _read_loop(self) -> None:
        while True:
            try:
                packet = self._ctrl.recv(_MAX_PACKET)
            except OSError:
                packet = b""
            if not packet:
                break
            message = json.loads(packet)
            with self._cond:
                if "exited" in message:
                    self._exits[int(message["exited"])] = int(message["code"])
                    while len(self._exits) > MAX_EXITS:
                        self._exits.popitem(last=False)
                else:
                    self._pids[int(message["id"])] = int(message["pid"])
                self._cond.notify_all()
        with self._cond:
            self.alive = False
            self._cond.notify_all()


class _Spawned:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self.pid = proc.pid

    def wait(self, timeout: float) -> int | None:
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        self._proc.kill()


class SpawnLauncher:
    """Starts every worker as a fresh interpreter (slow; for comparison and fallback)."""

    def start(self, sock: socket.socket, args: dict[str, Any]) -> WorkerProcess:
        return _Spawned(_python("spawned", sock, json.dumps(args)))


def _python(entry: str, sock: socket.socket, *extra: str) -> subprocess.Popen[bytes]:
    """A fresh interpreter with the kernel's sys.path running ``entry`` on ``sock``."""
    code = _BOOT.format(entry=entry)
    argv = [sys.executable, "-c", code, json.dumps(sys.path), str(sock.fileno()), *extra]
    return subprocess.Popen(argv, pass_fds=[sock.fileno()], stdin=subprocess.DEVNULL,
                            start_new_session=False)


# -- the fork server process -------------------------------------------------------------------


def serve(ctrl_fd: int) -> None:
    """Main of the fork server process. Returns when the kernel's socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctrl = socket.socket(fileno=ctrl_fd)
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            __import__(name)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    try:
        while True:
            ready, _, _ = select.select([ctrl.fileno(), wake_r], [], [])
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
            _reap(ctrl)
            if ctrl.fileno() in ready and not _serve_one(ctrl, (wake_r, wake_w)):
                return
    except OSError:
        return  # the kernel is gone


def _serve_one(ctrl: socket.socket, private: tuple[int, int]) -> bool:
    message, fds, _, _ = socket.recv_fds(ctrl, _MAX_PACKET, 1)
    if not message:
        return False
    request = json.loads(message)
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        return True
    pid = os.fork()
    if pid == 0:
        _become_worker(ctrl, private, fds[0], request["args"])
    os.close(fds[0])
    ctrl.send(json.dumps({"id": request["id"], "pid": pid}).encode("utf-8"))
    return True


def _become_worker(ctrl: socket.socket, private: tuple[int, int], fd: int,
                   args: dict[str, Any]) -> None:
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for own in private:
            os.close(own)
        ctrl.close()
        from workbench._wasm import _worker

        _worker.main(socket.socket(fileno=fd), **args)
    finally:
        os._exit(1)


def _reap(ctrl: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        ctrl.send(json.dumps({"exited": pid, "code": code}).encode("utf-8"))


def spawned(fd: int) -> None:
    """Main of a worker started with ``start_method="spawn"``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from workbench._wasm import _worker

    _worker.main(socket.socket(fileno=fd), **json.loads(sys.argv[3]))

"""A real JupyterLab server and Debian's Chromium under Playwright, for end-to-end view tests.

Everything the server reads or writes (config, data, runtime, settings, workspaces) lives
in a temporary folder; it binds 127.0.0.1 on a free port with no token; the browser gets a
fresh profile and can resolve no host but the loopback, and the test counts the page's
requests to other hosts. Kernels are shut down through the server's API and any process
left behind is killed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from scripts.views_harness import CHROMIUM_FLAGS, chromium_binary
from tests.procs import descendants


def chromium_installed() -> bool:
    """Whether Debian's chromium is here (CI installs it; see chromium_binary)."""
    try:
        chromium_binary()
    except OSError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    """A running JupyterLab: ``url``, ``root`` (its notebook folder), ``log`` (its output)."""

    def __init__(self, url: str, root: Path, log: Path, process: subprocess.Popen[bytes]):
        self.url = url
        self.root = root
        self.log = log
        self.process = process

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(f"{self.url}{path}", method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None


SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/extensionmanager-extension/plugin.jupyterlab-settings": {"disabled": True},
}


@contextmanager
def jupyterlab(tmp: Path) -> Iterator[Lab]:
    """Start JupyterLab on a free loopback port with everything under ``tmp``."""
    dirs = {name: tmp / name for name in ("config", "data", "runtime", "settings",
                                          "workspaces", "notebooks")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for name, values in SETTINGS.items():
        path = dirs["settings"] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port = free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(dirs["config"]),
           "JUPYTER_DATA_DIR": str(dirs["data"]), "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
           "JUPYTER_PLATFORM_DIRS": "1", "PYTHONPATH": str(Path(__file__).parent.parent)}
    log = tmp / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
               "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
               "--IdentityProvider.token=", "--ServerApp.password=",
               "--ServerApp.disable_check_xsrf=True",
               f"--ServerApp.root_dir={dirs['notebooks']}",
               f"--LabApp.user_settings_dir={dirs['settings']}",
               f"--LabApp.workspaces_dir={dirs['workspaces']}",
               "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=dirs["notebooks"])
    lab = Lab(f"http://127.0.0.1:{port}", dirs["notebooks"], log, process)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                lab.api("GET", "/api/status")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n"
                                       + log.read_text(errors="replace")[-3000:]) from None
                time.sleep(0.2)
        yield lab
    finally:
        kernels = descendants(process.pid)
        try:
            for kernel in lab.api("GET", "/api/kernels") or []:
                lab.api("DELETE", f"/api/kernels/{kernel['id']}")
        except OSError:
            pass
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        for pid in kernels | descendants(process.pid):
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@contextmanager
def chromium(tmp: Path, *, dark: bool = False) -> Iterator[Any]:
    """A Playwright browser context on Debian's Chromium with a fresh profile."""
    from playwright.sync_api import sync_playwright

    binary = str(chromium_binary())  # FileNotFoundError says what to install
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp / "profile"), executable_path=binary, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
            color_scheme="dark" if dark else "light")
        try:
            yield context
        finally:
            context.close()


KERNEL_READY = """() => {
    const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const k = w && w.sessionContext && w.sessionContext.session
              && w.sessionContext.session.kernel;
    return k && k.status === 'idle' && k.connectionStatus === 'connected';
}"""


def open_notebook(lab: Lab, browser: Any, name: str, cells: list[str],
                  outside: list[str] | None = None) -> Any:
    """Write a notebook of ``cells`` into the lab's folder, open it in a new page and wait
    for its kernel to be really ready (the toolbar says "Idle" before a kernel exists).
    Requests the page makes to other hosts than the lab's go to ``outside``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, lab.root / name)
    page = browser.new_page()
    if outside is not None:
        local = (lab.url, "data:", "blob:")
        page.on("request", lambda r: None if r.url.startswith(local)
                else outside.append(r.url))
    page.goto(f"{lab.url}/lab/tree/{name}")
    page.wait_for_function(KERNEL_READY, timeout=90_000)
    return page


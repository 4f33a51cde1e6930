"""The views' Node.js tool chain for the tests: `npm ci` into extension/node_modules when it is
missing or does not hold the pinned versions (what .ci/install-toolchains.sh also does)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "extension"


def npm() -> str:
    found = shutil.which("npm")
    if found is None:
        raise RuntimeError("npm is missing: install Node.js 18 or newer with npm "
                           "(.ci/install-toolchains.sh does, as root)")
    return found


def stale_packages() -> list[str]:
    """The pinned devDependencies that node_modules lacks or holds at another version."""
    pinned = json.loads((EXTENSION / "package.json").read_text())["devDependencies"]
    stale = []
    for name, version in sorted(pinned.items()):
        manifest = EXTENSION / "node_modules" / name / "package.json"
        if not manifest.exists() or json.loads(manifest.read_text()).get("version") != version:
            stale.append(name)
    return stale


def ensure_node_modules() -> None:
    """Installs exactly what package-lock.json pins, if node_modules is not already that."""
    if stale_packages():
        subprocess.run([npm(), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=EXTENSION, check=True, timeout=300)


def run_npm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    ensure_node_modules()
    return subprocess.run([npm(), *args], cwd=EXTENSION, capture_output=True, text=True,
                          timeout=timeout)

"""The committed views bundle is what the sources and the lockfile build, byte for byte."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from views_node import EXTENSION, ROOT, ensure_node_modules, npm

COMMITTED = ROOT / "workbench" / "static" / "views.js"


def test_committed_bundle_equals_a_fresh_build(tmp_path: Path) -> None:
    ensure_node_modules()
    result = subprocess.run([npm(), "run", "build", "--", "--out", str(tmp_path)], cwd=EXTENSION,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    fresh = (tmp_path / "views.js").read_bytes()
    assert fresh == COMMITTED.read_bytes(), (
        "workbench/static/views.js is stale: run `npm run build` in extension/ and commit it")


def test_bundle_is_one_esm_module_with_the_anywidget_entry_and_no_absolute_paths() -> None:
    text = COMMITTED.read_text()
    assert "export{" in text.replace(" ", "")
    assert "render" in text and "renderDocument" in text
    assert str(ROOT) not in text
    # Dependencies are bundled in: no import statement is left.
    assert re.search(r"""\bimport\s*[{*\w]|\bfrom\s*["']""", text) is None

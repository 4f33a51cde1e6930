"""The README's example runs as written (on the real default model)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.model
def test_readme_example_runs(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## 30 seconds\n\n```python\n(.*?)```", text, re.S)
    assert code is not None, "the README lost its 30-second example"
    os.chdir(ROOT)  # the example names examples/agents/... relative to the checkout
    namespace: dict[str, object] = {}
    try:
        exec(
            compile(
                code.group(1).replace(
                    "wb.Run(seed=7,", f"wb.Run(journal={str(tmp_path / 'j.wbj')!r}, seed=7,"
                ),
                "README.md",
                "exec",
            ),
            namespace,
        )
    finally:
        os.chdir(tmp_path)
    run = namespace["run"]
    assert run.state_of("critic") == {"reviewed": 1}  # type: ignore[attr-defined]
    run.close()  # type: ignore[attr-defined]

"""docs/internals.md shows the record and event schemas generated from the classes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_schema_tables_in_the_docs_match_the_classes() -> None:
    result = subprocess.run([sys.executable, "scripts/schema_docs.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_record_field_and_event_kind_is_in_the_docs() -> None:
    from workbench._events import EVENT_KINDS
    from workbench._records import RECORD_CLASSES

    doc = (ROOT / "docs" / "internals.md").read_text(encoding="utf-8")
    for cls in RECORD_CLASSES:
        assert f"| `{cls.KIND}` |" in doc
        for _, key, _, _ in cls.SCHEMA:
            assert f"| `{key}` |" in doc
    for kind in EVENT_KINDS:
        assert f"| `{kind}` |" in doc

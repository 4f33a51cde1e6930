"""The views' front-end unit tests (extension/test, node's test runner) and type check."""

from __future__ import annotations

from views_node import run_npm


def test_front_end_unit_tests_and_type_check_pass() -> None:
    result = run_npm("test")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "# fail 0" in output
    assert "# pass " in output and "# pass 0\n" not in output

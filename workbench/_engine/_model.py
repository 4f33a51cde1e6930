"""What the runtime needs to know about a model: its shape (:class:`ModelConfig`) and its files.

:func:`resolve_model` and :func:`make_tiny_model` are the two ways to get a
:class:`ModelFiles`; the ONNX graph's calling convention is documented in ``_graph.py``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST", "ModelConfig", "ModelFiles", "read_manifest", "write_manifest"]

MANIFEST = "workbench-model.json"


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a decoder-only (Llama-family) model, as the decode loop needs it.

    ``max_position`` is the number of rows of the rotary cos/sin caches baked into a converted
    graph: no sequence (prompt + generated tokens, i.e. the KV buffer length) may exceed it.
    ``context_length`` is what the model was trained for (usually the same).
    """

    architecture: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position: int
    rope_theta: float
    rms_eps: float
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    context_length: int


@dataclass(frozen=True)
class ModelFiles:
    """A loadable model: one ONNX graph, its tokenizer and chat template.

    ``model_hash`` is the SHA-256 of the source (GGUF file or ONNX graph) plus the converter
    version, so it names the exact weights and graph the journal records. ``variant`` is
    ``"q4-int8act"`` (fast, int8 activations), ``"q4-fp32act"`` (exact) or ``"onnx"``
    (an ONNX model exported by another tool, loaded as it is).
    """

    model_id: str
    model_hash: str
    folder: Path
    onnx_path: Path
    tokenizer_path: Path
    chat_template: str | None
    config: ModelConfig
    variant: str


def write_manifest(files: ModelFiles) -> None:
    """Record ``files`` as ``folder/workbench-model.json`` (paths relative to the folder)."""
    data = {"format": 1, "model_id": files.model_id, "model_hash": files.model_hash,
            "variant": files.variant, "chat_template": files.chat_template,
            "onnx": files.onnx_path.name, "tokenizer": files.tokenizer_path.name,
            "config": asdict(files.config)}
    (files.folder / MANIFEST).write_text(json.dumps(data, indent=1, sort_keys=True))


def read_manifest(folder: Path) -> ModelFiles:
    """The ModelFiles recorded in ``folder``. Raises ValueError/KeyError/OSError if damaged."""
    data: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
    config = dict(data["config"])
    config["eos_token_ids"] = tuple(config["eos_token_ids"])
    onnx_path, tok_path = folder / data["onnx"], folder / data["tokenizer"]
    for path in (onnx_path, tok_path):
        if path.parent != folder:
            raise ValueError(f"manifest path {path} leaves the model folder")
    return ModelFiles(model_id=data["model_id"], model_hash=data["model_hash"], folder=folder,
                      onnx_path=onnx_path, tokenizer_path=tok_path,
                      chat_template=data["chat_template"], config=ModelConfig(**config),
                      variant=data["variant"])

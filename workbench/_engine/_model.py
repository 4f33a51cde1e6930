"""What the runtime needs to know about a model: its shape (:class:`ModelConfig`) and its files.

:func:`resolve_model` and :func:`make_tiny_model` are the two ways to get a
:class:`ModelFiles`; the ONNX graph's calling convention is documented in ``_graph.py``.
:func:`export_config`, :func:`export_chat_template` and :func:`kv_cache_dims` read the metadata
of a folder exported by another tool (onnxruntime-genai's model builder, optimum).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workbench.errors import ModelLoadError

__all__ = ["MANIFEST", "ModelConfig", "ModelFiles", "config_kv_dims", "export_chat_template",
           "export_config", "kv_cache_dims", "read_manifest", "write_manifest"]

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


# --- folders exported by other tools ---------------------------------------------------------


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, ``{}`` when absent. Raises ModelLoadError when it is not JSON."""
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise ModelLoadError(str(path), f"not valid JSON ({exc}); fix or remove it") from exc
    return data if isinstance(data, dict) else {}


def export_config(folder: Path) -> dict[str, Any]:
    """The model settings of an exported folder under ``config.json``'s names.

    Merged in this order, later files winning: ``config.json``; ``generation_config.json``'s
    ``bos_token_id`` / ``eos_token_id`` / ``pad_token_id`` (what generation stops on, as
    transformers uses them); onnxruntime-genai's ``genai_config.json`` (``head_size`` becomes
    ``head_dim``, ``context_length`` becomes ``max_position_embeddings``).
    """
    merged = read_json(folder / "config.json")
    generation = read_json(folder / "generation_config.json")
    merged |= {k: generation[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")
               if generation.get(k) is not None}
    model = read_json(folder / "genai_config.json").get("model", {})
    decoder = model.get("decoder", {}) if isinstance(model, dict) else {}
    if isinstance(decoder, dict):
        genai = {"num_hidden_layers": decoder.get("num_hidden_layers"),
                 "hidden_size": decoder.get("hidden_size"),
                 "head_dim": decoder.get("head_size"),
                 "num_attention_heads": decoder.get("num_attention_heads"),
                 "num_key_value_heads": decoder.get("num_key_value_heads"),
                 "max_position_embeddings": model.get("context_length"),
                 "vocab_size": model.get("vocab_size"), "bos_token_id": model.get("bos_token_id"),
                 "eos_token_id": model.get("eos_token_id"), "model_type": model.get("type")}
        merged |= {k: v for k, v in genai.items() if v is not None}
    return merged


def export_chat_template(folder: Path) -> str | None:
    """The folder's chat template: ``chat_template.jinja`` (what transformers saves now), else
    ``chat_template.json``, else ``tokenizer_config.json``'s ``chat_template`` (a string, or a
    list of named templates of which the ``default`` one is used)."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        try:
            return jinja.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelLoadError(str(jinja), f"unreadable chat template ({exc})") from exc
    for name in ("chat_template.json", "tokenizer_config.json"):
        template = read_json(folder / name).get("chat_template")
        if isinstance(template, list):
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        if isinstance(template, str):
            return template
    return None


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else None


def config_kv_dims(folder: Path) -> tuple[int | None, int | None]:
    """(kv heads, head size) that the folder's config states or implies: ``head_dim``
    (``head_size`` in genai_config.json), else ``hidden_size / num_attention_heads``."""
    config = export_config(folder)
    heads = _positive(config.get("num_attention_heads"))
    kv_heads = _positive(config.get("num_key_value_heads")) or heads
    head_dim = _positive(config.get("head_dim"))
    hidden = _positive(config.get("hidden_size"))
    if head_dim is None and hidden is not None and heads is not None and hidden % heads == 0:
        head_dim = hidden // heads
    return kv_heads, head_dim


def kv_cache_dims(shape: Sequence[Any], onnx_path: Path) -> tuple[int, int]:
    """(kv heads, head size) of a ``past_key_values`` input of shape ``[batch, kv_heads, past,
    head_size]``. A symbolic size (onnxruntime-genai's builder writes ``kv_cache_dim``) is
    taken from the folder's config. Raises ModelLoadError when it cannot be known."""
    if len(shape) != 4:
        raise ModelLoadError(str(onnx_path), f"past_key_values.0.key has shape {list(shape)}; "
                             "expected [batch, kv_heads, past, head_dim]")
    kv_heads, head_dim = _positive(shape[1]), _positive(shape[3])
    if kv_heads is None or head_dim is None:
        hint_heads, hint_dim = config_kv_dims(onnx_path.parent)
        kv_heads, head_dim = kv_heads or hint_heads, head_dim or hint_dim
    if kv_heads is None or head_dim is None:
        raise ModelLoadError(str(onnx_path), f"past_key_values.0.key has shape {list(shape)} "
                             "and the folder does not say the sizes: put head_size and "
                             "num_key_value_heads in genai_config.json's model.decoder, or "
                             "head_dim (or hidden_size and num_attention_heads) and "
                             "num_key_value_heads in config.json")
    return kv_heads, head_dim

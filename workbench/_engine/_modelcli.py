"""``workbench models list|import|info``: the model cache from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from workbench._engine._convert import DEFAULT_VARIANT, VARIANTS
from workbench._engine._model import ModelFiles
from workbench.errors import ConfigError, ModelLoadError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``models`` command and its sub-commands."""
    models = sub.add_parser("models", help="list, import and inspect models in the cache")
    def usage(args: argparse.Namespace) -> int:
        models.print_help()
        return 2

    models.set_defaults(func=usage)
    verbs = models.add_subparsers(dest="models_command", metavar="ACTION")

    listing = verbs.add_parser("list", help="converted models in the cache")
    _cache_option(listing)
    listing.set_defaults(func=_list)

    imp = verbs.add_parser("import", help="convert a .gguf file (or check an ONNX folder) "
                                          "into the cache")
    imp.add_argument("path", type=Path, help="a .gguf file or a folder with an ONNX decoder")
    imp.add_argument("--name", help="model id to record (default: the file name)")
    _variant_option(imp)
    _cache_option(imp)
    imp.set_defaults(func=_import)

    info = verbs.add_parser("info", help="configuration and files of one model")
    info.add_argument("model", help="a known name (smollm2-135m-instruct), model id, hash or "
                                    "path")
    _variant_option(info)
    _cache_option(info)
    info.set_defaults(func=_info)


def _cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", type=Path, default=None,
                        help="cache folder (default: $WORKBENCH_CACHE or ~/.cache/workbench)")


def _variant_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variant", choices=sorted(VARIANTS), default=DEFAULT_VARIANT,
                        help="q4-int8act: fast (default); q4-fp32act: exact activations")


def _list(args: argparse.Namespace) -> int:
    from workbench._engine._store import list_models

    models = list_models(args.cache)
    if not models:
        print("no models in the cache; `workbench models import PATH.gguf` adds one")
        return 0
    print(f"{'MODEL':32} {'VARIANT':11} {'HASH':12} {'SIZE':>9}  FOLDER")
    for files in models:
        size = files.onnx_path.stat().st_size if files.onnx_path.exists() else 0
        print(f"{files.model_id:32} {files.variant:11} {files.model_hash[:12]} "
              f"{size / 1e6:7.1f}MB  {files.folder}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from workbench._engine._store import import_gguf, load_onnx_folder

    def run() -> ModelFiles:
        path: Path = args.path
        if not path.exists():
            raise ModelLoadError(str(path), "no such file or folder")
        if path.is_file() and path.suffix == ".gguf":
            return import_gguf(path, cache_dir=args.cache, model_id=args.name,
                               variant=args.variant)
        if path.is_dir() or path.suffix == ".onnx":
            return load_onnx_folder(path if path.is_dir() else path.parent,
                                    cache_dir=args.cache)
        raise ModelLoadError(str(path), "expected a .gguf file or a folder with a .onnx model")

    return _guarded(run, lambda files: print(f"imported {files.model_id} ({files.variant}) "
                                             f"{files.model_hash[:12]} -> {files.folder}"))


def _info(args: argparse.Namespace) -> int:
    from workbench._engine._store import resolve_model

    def show(files: ModelFiles) -> None:
        data = {"model_id": files.model_id, "model_hash": files.model_hash,
                "variant": files.variant, "folder": str(files.folder),
                "onnx": str(files.onnx_path), "tokenizer": str(files.tokenizer_path),
                "chat_template": files.chat_template is not None,
                "config": asdict(files.config)}
        print(json.dumps(data, indent=2))

    return _guarded(lambda: resolve_model(args.model, cache_dir=args.cache,
                                          variant=args.variant), show)


def _guarded(action: Callable[[], ModelFiles], report: Callable[[ModelFiles], None]) -> int:
    try:
        files = action()
    except (ModelLoadError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report(files)
    return 0

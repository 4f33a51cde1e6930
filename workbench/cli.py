"""The ``workbench`` command. Each component registers its own sub-commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _registrars() -> list[Register]:
    # Each entry adds sub-commands; the handler is stored as `func` on the parsed namespace
    # and returns the process exit code.
    from workbench import _cli_core, _headless, _report
    from workbench._engine import _modelcli
    from workbench._wasm import _cli as _wasm_cli

    return [_cli_core.register, _wasm_cli.register, _modelcli.register, _headless.register,
            _report.register]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Deterministic multi-agent LLM inference: run, replay, inspect.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    code: int = func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

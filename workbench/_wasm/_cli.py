"""Sub-commands of the WebAssembly agents: ``workbench build-agent``."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from workbench._wasm._build import SOURCE_SUFFIXES, build_agent
from workbench.errors import AgentBuildError, ConfigError, ToolchainMissing


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "build-agent",
        help="compile an agent (WAT, C or AssemblyScript) to a WebAssembly module",
        description=(
            "Compile an agent to a WebAssembly module for ABI v1. The toolchain follows the "
            f"extension ({', '.join(SOURCE_SUFFIXES)}): WAT needs nothing, C needs clang, "
            "lld, wasi-libc and the wasm32 compiler-rt builtins, AssemblyScript needs the npm "
            "package assemblyscript next to the source. Prints the module's path and sha256."
        ),
    )
    parser.add_argument("source", type=Path, help="the agent's source file")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="where to write the module (default: SOURCE with suffix .wasm)")
    parser.set_defaults(func=_build_agent)


def _build_agent(args: argparse.Namespace) -> int:
    try:
        out = build_agent(args.source, args.output)
    except (AgentBuildError, ConfigError, FileNotFoundError) as err:
        # FileNotFoundError covers ToolchainMissing and a missing source.
        kind = "missing toolchain" if isinstance(err, ToolchainMissing) else "error"
        print(f"workbench build-agent: {kind}: {err}", file=sys.stderr)
        return 1
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"{out}  sha256:{digest}")
    return 0

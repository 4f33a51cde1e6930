"""Core sub-commands: replay, inspect, doctor."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    del sub  # filled in by the runtime core

"""The model subcommands (`prepare`, `train`, `evaluate`), registered on the main parser."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the model subcommands to ``subparsers`` (filled in with issue 3)."""

"""``cnnrnn`` subcommands: kemdy (placeholder until its issue lands)."""
from __future__ import annotations


def add_commands(sub) -> None:
    """Add this module's subcommands to the ``cnnrnn`` parser's subparsers ``sub``."""

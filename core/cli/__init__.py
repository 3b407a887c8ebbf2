"""The ``behaviorlens`` command line: one module per command group; the only place that reads argv."""

from __future__ import annotations

from core.cli.commands import main

__all__ = ["main"]

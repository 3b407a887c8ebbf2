"""``python -m core.cli``: the same as the ``behaviorlens`` console script (and what torchrun launches)."""

from __future__ import annotations

from core.cli.commands import main

raise SystemExit(main())

"""What the reliability tests share: a copy of the tiny trained workspace, which a test may damage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunCopy:
    """A private copy of the tiny trained workspace: its folder, the run's ID and folder, one original user ID."""

    root: Path
    run_id: str
    user: str

    @property
    def folder(self) -> Path:
        return self.root / "runs" / self.run_id

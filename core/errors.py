"""The project's exception tree.

Every error raised on purpose by ``core`` derives from :class:`BehaviorLensError`,
so callers (the CLI, the pages) catch exactly the project's errors and let real
bugs surface. Messages name the offending column or value and what was expected.
"""

from __future__ import annotations


class BehaviorLensError(Exception):
    """Base class of every error raised on purpose by BehaviorLens."""


class DataError(BehaviorLensError, ValueError):
    """Input data is wrong: a bad column, value, mapping or option."""


class UnusableFileError(DataError):
    """A file cannot be ingested at all (empty, not tabular, no ID columns, too big).

    The CLI exits with status 2 on this error.
    """


class NotFittedError(BehaviorLensError, RuntimeError):
    """A model or estimator was used before ``fit``."""


class ArtifactError(BehaviorLensError):
    """A saved artifact (checkpoint, config, cache) is missing, tampered or mismatched."""


class WorkspaceError(BehaviorLensError):
    """The workspace folder or database cannot be used."""


class NotFoundError(BehaviorLensError, KeyError):
    """A named dataset, run, user or item does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""

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


class UnmappedFieldError(UnusableFileError):
    """A required field (user_id, item_id) has no column: neither guessed nor picked.

    It carries what a front end needs to say how to fix it in its own terms (a form field on the
    Data page, ``--map`` on the command line): ``field``, the ``file`` name, its ``columns`` (the
    candidates) and whether the file has a ``header`` row.
    """

    def __init__(self, field: str, file: str, columns: list[str], header: bool = True) -> None:
        self.field, self.file, self.columns, self.header = field, file, list(columns), header
        super().__init__(f"no {field} column found in {file} among {self.columns}")

    def __reduce__(self) -> tuple[type[UnmappedFieldError], tuple[str, str, list[str], bool]]:
        return type(self), (self.field, self.file, self.columns, self.header)


class NotFittedError(BehaviorLensError, RuntimeError):
    """A model or estimator was used before ``fit``."""


class ArtifactError(BehaviorLensError):
    """A saved artifact (checkpoint, config, cache) is missing, tampered or mismatched."""


class WorkspaceError(BehaviorLensError):
    """The workspace folder or database cannot be used."""


class DatasetInUseError(DataError):
    """An ingest would change the events of a dataset that runs were trained on (nothing is written).

    The CLI exits with status 2 on this error.
    """


class DatasetChangedError(ArtifactError):
    """A run's dataset no longer holds the events the run was trained on (re-ingested or edited).

    The CLI exits with status 2 on this error.
    """


class RunBusyError(BehaviorLensError):
    """A run is being trained by a live process: it cannot be resumed or deleted now.

    The CLI exits with status 2 on this error.
    """


class TrainingFailedError(BehaviorLensError):
    """A training job failed: a worker process of a multi-process run exited with an error."""


class AccessConfigError(BehaviorLensError, ValueError):
    """The sign-in configuration of a shared dashboard (``[auth]``, ``[behaviorlens.access]``) is malformed or
    lets nobody in: the dashboard stays closed and shows this message."""


class NotFoundError(BehaviorLensError, KeyError):
    """A named dataset, run, user or item does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""

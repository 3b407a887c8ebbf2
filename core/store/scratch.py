"""Private scratch folders in the system temp folder, and the sweep that removes the ones a killed process left.

Ingest spills to disk (DuckDB's temp folder), screens over-long lines into a copy, and
decompresses ``.parquet.gz`` files: each in a folder of :func:`scratch_dir`, removed when the
work ends. A process killed meanwhile cannot remove its folder, and such a folder holds raw
rows (original user IDs among them). So the folder's name carries its process ID:
``behaviorlens-<kind>-<pid>-<random>``, and :func:`sweep_scratch` (run before every ingest and
on every page run of the dashboard) removes the folders of processes that are gone, and the
``behaviorlens-*`` folders of earlier releases (no process ID in the name, e.g. the dashboard's
old ``behaviorlens-upload-*`` copies) once untouched for an hour. Only the current user's folders
are touched.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from core.errors import WorkspaceError

PREFIX = "behaviorlens-"
LEGACY_STALE_S = 3600.0  # a folder of an earlier release (no process ID in its name) untouched this long
_OURS = re.compile(r"^behaviorlens-([a-z]+)-(\d+)-")
_LOG = logging.getLogger(__name__)


def scratch_dir(kind: str) -> Path:
    """A fresh private (0700) folder ``behaviorlens-<kind>-<pid>-<random>`` in the system temp folder."""
    if not re.fullmatch(r"[a-z]+", kind):
        raise ValueError(f"scratch kind {kind!r}: expected lowercase letters")
    try:
        return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-{os.getpid()}-"))  # mkdtemp creates it 0700
    except OSError as exc:
        raise WorkspaceError(f"cannot create a scratch folder in {tempfile.gettempdir()}: {exc.strerror}") from exc


def sweep_scratch(root: str | os.PathLike[str] | None = None, now: float | None = None) -> list[Path]:
    """Remove this user's scratch folders whose process is gone, and old ones without a process ID; the
    folders removed (``root``: the temp folder to sweep, default the system's)."""
    base = Path(root or tempfile.gettempdir())
    cutoff = (time.time() if now is None else now) - LEGACY_STALE_S
    removed: list[Path] = []
    try:
        entries = [e for e in base.iterdir() if e.name.startswith(PREFIX)]
    except OSError as exc:
        _LOG.warning("cannot list %s to remove stale scratch folders: %s", base, exc.strerror)
        return removed
    for entry in entries:
        try:
            info = entry.lstat()
        except FileNotFoundError:  # removed meanwhile by another sweep or by its owner
            continue
        if info.st_uid != os.getuid() or not entry.is_dir() or entry.is_symlink():
            continue
        match = _OURS.match(entry.name)
        stale = not _alive(int(match.group(2))) if match else info.st_mtime < cutoff
        if stale:
            remove_tree(entry)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user has that pid now: not ours to judge
        return True
    return True


def remove_tree(folder: Path) -> None:
    """``rmtree`` that tolerates only what a concurrent sweep causes: a path already gone."""

    def gone_already(path: str, exc: BaseException) -> None:
        if not isinstance(exc, FileNotFoundError):
            raise exc

    if sys.version_info >= (3, 12):
        shutil.rmtree(folder, onexc=lambda _f, path, exc: gone_already(path, exc))
    else:
        shutil.rmtree(folder, onerror=lambda _f, path, info: gone_already(path, info[1]))

"""Uploaded files on disk: a private copy for exactly as long as one read of it lasts.

An upload (raw user IDs, e-mail addresses...) is written to a fresh folder of its own,
``<workspace>/uploads/<random>/<safe name>`` (folders 0700, the file 0600), read, and
deleted when the read ends, whether it succeeded or failed (:func:`upload_copy`).

Streamlit has no session-end hook, so nothing can wait for a session to end: the
dashboard keeps no upload on disk between two script runs (it re-copies the browser's
bytes, which Streamlit holds in memory for the session, whenever it must read them), and
:func:`sweep_stale_uploads` removes what a crash or a killed process left behind: every
upload folder untouched for an hour (``STALE_AFTER_S``). The dashboard sweeps when its
process starts and on every run of the Data page. A folder in use is younger than that: a
copy lives for one inspection or one ingest.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from core.errors import WorkspaceError
from core.store.scratch import remove_tree

UPLOADS_DIR = "uploads"  # under the workspace root
STALE_AFTER_S = 3600.0  # an upload folder untouched this long is left over from a dead session or process
CHUNK = 1024 * 1024
FOLDER_MODE = 0o700
FILE_MODE = 0o600


def safe_file_name(name: str) -> str:
    """A file name reduced to safe characters, its suffixes (``.csv.gz``) kept."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name).lstrip(".-_") or "upload"
    return cleaned[-128:]


def uploads_root(workspace_root: str | os.PathLike[str]) -> Path:
    """``<workspace>/uploads``, created private (0700) if missing."""
    root = Path(workspace_root) / UPLOADS_DIR
    try:
        root.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        os.chmod(root, FOLDER_MODE)  # mkdir's mode is masked by the umask; an older folder may be wider
    except OSError as exc:
        raise WorkspaceError(f"cannot create the uploads folder {root}: {exc.strerror or exc}") from exc
    return root


def save_upload(workspace_root: str | os.PathLike[str], name: str, stream: BinaryIO) -> Path:
    """Copy ``stream`` (from its start) to a fresh private folder under :func:`uploads_root`; the file's path."""
    folder = uploads_root(workspace_root) / secrets.token_hex(16)
    target = folder / safe_file_name(name)
    try:
        folder.mkdir(mode=FOLDER_MODE)
        os.chmod(folder, FOLDER_MODE)
        stream.seek(0)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(stream, out, CHUNK)
    except BaseException as exc:
        if folder.exists():
            remove_tree(folder)
        if isinstance(exc, OSError):  # a full disk, a read-only workspace
            raise WorkspaceError(
                f"cannot save the upload {name!r} under {folder.parent}: {exc.strerror or exc}"
            ) from exc
        raise
    return target


def remove_upload(path: str | os.PathLike[str]) -> None:
    """Delete the folder of a saved upload (``path`` is the file :func:`save_upload` returned)."""
    folder = Path(path).parent
    if folder.parent.name != UPLOADS_DIR:
        raise ValueError(f"{path} is not a saved upload (expected <workspace>/{UPLOADS_DIR}/<folder>/<file>)")
    remove_tree(folder)


@contextmanager
def upload_copy(workspace_root: str | os.PathLike[str], name: str, stream: BinaryIO) -> Iterator[Path]:
    """A private copy of an upload for the ``with`` block; deleted when it ends, however it ends."""
    path = save_upload(workspace_root, name, stream)
    try:
        yield path
    finally:
        remove_upload(path)


def sweep_stale_uploads(
    workspace_root: str | os.PathLike[str], max_age_s: float = STALE_AFTER_S, now: float | None = None
) -> list[Path]:
    """Delete the upload folders not modified for ``max_age_s`` seconds; the folders deleted."""
    root = Path(workspace_root) / UPLOADS_DIR
    if not root.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - max_age_s
    removed: list[Path] = []
    try:
        for entry in sorted(root.iterdir()):
            try:
                modified = entry.lstat().st_mtime
            except FileNotFoundError:  # another session swept it first
                continue
            if modified < cutoff:
                if entry.is_dir() and not entry.is_symlink():
                    remove_tree(entry)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry)
    except OSError as exc:
        raise WorkspaceError(f"cannot clean the uploads folder {root}: {exc.strerror or exc}") from exc
    return removed

"""Private by default: the workspace's folders are 0700 and its files 0600, whatever the umask.

The workspace holds pseudonymized events, review texts and the pseudonym key, so no other
local user may read it. ``mkdir``'s and ``open``'s modes are masked by the umask, so every
folder and file is ``chmod``-ed to its mode after it is created (:func:`private_dir`, and ``fchmod`` in
:mod:`core.store.files`), and a workspace made by an older release (0755 folders, a 0644
database) is tightened when it is opened (:func:`tighten_tree`). A path this user cannot
``chmod`` (another user's file) is left as it is and named in a logged warning.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600
_LOG = logging.getLogger(__name__)


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents as 0700 folders (existing folders are not changed); ``path``."""
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:  # another process or thread made it first
            continue
        os.chmod(folder, FOLDER_MODE)  # mkdir's mode is masked by the umask
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path))
    return path


def tighten_tree(root: Path, names: tuple[str, ...]) -> list[Path]:
    """Make ``root`` and its entries ``names`` (recursively) private: folders 0700, files 0600; links not followed.

    Only what the workspace made is touched (not other files someone put in its folder), and only
    modes wider than private change. Returns the paths this user could not ``chmod`` (another
    user's), each also named in one logged warning.
    """
    refused: list[Path] = []
    for entry in _walk(root, names):
        try:
            info = entry.lstat()
            if stat.S_ISLNK(info.st_mode) or not stat.S_IMODE(info.st_mode) & 0o077:
                continue
            wanted = FOLDER_MODE if stat.S_ISDIR(info.st_mode) else FILE_MODE
            os.chmod(entry, stat.S_IMODE(info.st_mode) & wanted)
        except FileNotFoundError:  # removed by another process meanwhile
            continue
        except OSError:  # another user's file, a read-only file system
            refused.append(entry)
    if refused:
        shown = ", ".join(str(p) for p in refused[:5]) + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
        _LOG.warning(
            "could not make %d path(s) of workspace %s private (another user's, or a read-only disk): %s; "
            "other local users may read them: change their owner or mode by hand",
            len(refused),
            root,
            shown,
        )
    return refused


def _walk(root: Path, names: tuple[str, ...]) -> list[Path]:
    """``root``, then each existing entry of ``names`` and, for a real folder, everything under it."""
    found = [root]
    for name in names:
        top = root / name
        if not os.path.lexists(top):
            continue
        found.append(top)
        if top.is_dir() and not top.is_symlink():
            for folder, dirs, files in os.walk(top):
                found += [Path(folder) / n for n in dirs + files]
    return found

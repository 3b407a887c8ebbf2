"""User pseudonyms: a keyed hash (HMAC-SHA256) under a key kept in the workspace.

The key is 32 random bytes in ``<workspace>/.key`` (mode 0600). It is read by
:class:`core.store.workspace.Workspace` and never printed, logged or stored elsewhere. It also
seals run configs (:mod:`core.store.seals`): without it, an edited config cannot be re-sealed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from core.errors import WorkspaceError
from core.store.permissions import FILE_MODE

KEY_FILE = ".key"
KEY_BYTES = 32
PSEUDONYM_PREFIX = "u_"
PSEUDONYM_HEX = 16  # 64 bits: collisions are checked on ingest


def load_or_create_key(root: Path) -> bytes:
    """The key of the workspace at ``root``, created on first use.

    A new key is written to a private temp file and hard-linked into place, so a
    second process never reads a partly written key: it finds the whole file, or
    loses the link race and reads the winner's.
    """
    path = root / KEY_FILE
    if not path.exists():
        fd, tmp = tempfile.mkstemp(prefix=KEY_FILE + ".", dir=root)
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), FILE_MODE)  # mkstemp's 0600 is masked by the umask
                fh.write(secrets.token_bytes(KEY_BYTES))
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            Path(tmp).unlink(missing_ok=True)
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise WorkspaceError(f"the pseudonym key file {path} is damaged (expected {KEY_BYTES} bytes)")
    return key


def pseudonymize(key: bytes, raw_user_ids: list[str]) -> list[str]:
    """``u_`` + the first 64 bits (hex) of HMAC-SHA256(key, id) for each raw ID."""
    keyed = hmac.new(key, digestmod=hashlib.sha256)
    out: list[str] = []
    for uid in raw_user_ids:
        mac = keyed.copy()  # the keyed inner/outer state is computed once
        mac.update(uid.encode("utf-8"))
        out.append(PSEUDONYM_PREFIX + mac.hexdigest()[:PSEUDONYM_HEX])
    return out

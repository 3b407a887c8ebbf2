"""The workspace lock: one exclusive ``flock`` per workspace, given up after a timeout with the holder named.

Every database access holds the lock (:meth:`core.store.workspace.Workspace.connect`): DuckDB
allows one writing process per file. Threads of one process take turns on a thread lock
first, then the process takes the ``flock`` on ``<root>/.lock``. Whoever gets it writes who
they are into that file (pid, host, command without its argument values, since when), so
that a process that waits longer than the timeout (``LOCK_TIMEOUT_S``, or
``$BEHAVIORLENS_LOCK_TIMEOUT`` seconds) fails
with a :class:`~core.errors.WorkspaceError` that says who holds the lock, for how long, and
what to do, instead of waiting forever. The kernel drops a ``flock`` when its holder dies, so a
killed process never leaves the workspace locked; its record stays in the file until the next
holder overwrites it.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.errors import WorkspaceError
from core.store.permissions import FILE_MODE

LOCK_FILE = ".lock"
LOCK_TIMEOUT_S = 60.0
LOCK_TIMEOUT_ENV = "BEHAVIORLENS_LOCK_TIMEOUT"
_POLL_S = (0.01, 0.25)  # first and longest pause between two tries of the flock
_WORD = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")  # a subcommand, not a value


def lock_timeout() -> float:
    """Seconds to wait for the workspace lock: ``$BEHAVIORLENS_LOCK_TIMEOUT`` if set, else ``LOCK_TIMEOUT_S``."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    if raw is None or not raw.strip():
        return LOCK_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise WorkspaceError(
            f"{LOCK_TIMEOUT_ENV}={raw!r}: expected a number of seconds >= 0 (default {LOCK_TIMEOUT_S:g})"
        )
    return value


class WorkspaceLock:
    """The inter-process lock of the workspace at ``root`` (re-entrant per thread)."""

    _thread_lock = threading.RLock()  # threads of one process take turns, across every workspace
    _held = threading.local()  # this thread's depth per workspace, for re-entry without a second flock

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / LOCK_FILE

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the block; WorkspaceError when it stays taken past :func:`lock_timeout`."""
        depths: dict[Path, int] = self._held.__dict__.setdefault("depths", {})
        if depths.get(self.root, 0):  # this thread holds it already
            depths[self.root] += 1
            try:
                yield
            finally:
                depths[self.root] -= 1
            return
        timeout = lock_timeout()
        deadline = time.monotonic() + timeout
        if not self._thread_lock.acquire(timeout=timeout):
            raise self._busy(timeout, "another thread of this process")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
            try:
                self._take(fd, deadline, timeout)
                depths[self.root] = 1
                try:
                    self._record(fd)
                    yield
                finally:
                    depths[self.root] = 0
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        finally:
            self._thread_lock.release()

    def _take(self, fd: int, deadline: float, timeout: float) -> None:
        pause = _POLL_S[0]
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise self._busy(timeout, "another process") from None
                time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
                pause = min(pause * 2, _POLL_S[1])

    def _record(self, fd: int) -> None:
        """Write who holds the lock now into the lock file (0600, inside the private workspace)."""
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": _command(sys.argv),
            "since": time.time(),
        }
        data = json.dumps(record).encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fchmod(fd, FILE_MODE)

    def holder(self) -> dict[str, Any] | None:
        """The last recorded holder (pid, host, command, since), or None when there is no readable record."""
        try:
            record = json.loads(self.path.read_bytes() or b"null")
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def _busy(self, timeout: float, who: str) -> WorkspaceError:
        record = self.holder()
        since = record.get("since") if record is not None else None
        if record is None or not isinstance(since, (int, float)) or isinstance(since, bool):
            holder = f"{who} (no readable record of it was left)"
        else:
            when = datetime.fromtimestamp(since, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            holder = (
                f"{who}: process {record.get('pid')} on {record.get('host')} ({record.get('command')!s}), "
                f"holding it since {when} ({_duration(time.time() - since)})"
            )
        return WorkspaceError(
            f"the workspace {self.root} is busy: its lock is held by {holder}; gave up after waiting "
            f"{timeout:g} s. Wait for that command to finish (an ingest or a training start can take a while), "
            f"or stop it if it hangs; set {LOCK_TIMEOUT_ENV} to wait longer"
        )


def _command(argv: list[str]) -> str:
    """What a process runs, without the values of its arguments (they may name users, items or files): the
    program, its subcommand and the names of its options (``behaviorlens recommend --run --user``)."""
    if not argv:
        return "python"
    program = Path(argv[0])
    words = [program.parent.name if program.name == "__main__.py" else program.name]  # python -m package
    subcommand = False
    for arg in argv[1:]:
        if arg.startswith("-"):
            words.append(arg.split("=", 1)[0])
        elif not subcommand and _WORD.match(arg):
            words.append(arg)
            subcommand = True
    return " ".join(words)[:200]


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

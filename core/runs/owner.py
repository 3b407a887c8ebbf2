"""The owner of a running run: which process trains it, a heartbeat, and whether that process is still there.

Whatever trains a run (``behaviorlens train``, the detached worker of the Train page and of
``sample --train``, a script calling ``train_run``) first writes ``owner.json`` into the run folder,
then records the run ``running``, keeps ``heartbeat.json`` fresh from a daemon thread (every
:data:`HEARTBEAT_SECONDS`) until the training ends, and then removes both (:func:`owning`)::

    owner.json      {"run_id", "pid", "host", "boot_id", "start", "at"}: ``start`` is the process's start
                    time in clock ticks since boot (``/proc/<pid>/stat``), which tells a reused pid apart
    heartbeat.json  {"pid", "at"}: rewritten by the heartbeat thread

:func:`owner_alive` says whether the owner still trains the run: on the owner's own host (same host
name and boot) by the process itself (the pid runs, is not a zombie and started when recorded); on
another host, or without procfs, by the heartbeat (fresher than :data:`STALE_SECONDS`). A run
recorded ``running`` whose owner is not alive reads ``interrupted`` (:mod:`core.runs.records`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import ArtifactError, RunBusyError
from core.store.files import load_json, save_json

OWNER_FILE, HEARTBEAT_FILE = "owner.json", "heartbeat.json"
HEARTBEAT_SECONDS = 5.0  # how often the heartbeat thread rewrites heartbeat.json
STALE_SECONDS = 60.0  # a heartbeat older than this: the owner is gone (where its process cannot be asked)
_PROC = Path("/proc")
_EXEC_POLLS, _EXEC_POLL_SECONDS = 50, 0.01  # a process inside exec shows an empty command line for a moment
_BEATS: dict[Path, tuple[threading.Event, list[int]]] = {}  # this process's heartbeats: folder -> (stop, [users])
_BEATS_LOCK = threading.Lock()


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a process from procfs; None when there is no such process."""
    text = _read(_PROC / str(pid) / "stat")
    if text is None:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name, in parentheses, may hold spaces
    return fields[0], fields[19]


def has_procfs() -> bool:
    """Whether processes can be inspected through ``/proc`` (Linux)."""
    return (_PROC / "self" / "stat").is_file()


def this_host() -> tuple[str, str | None]:
    """(host name, boot ID or None): where a process of this machine's current boot runs."""
    return socket.gethostname(), _read(_PROC / "sys" / "kernel" / "random" / "boot_id")


def claim(folder: Path, run_id: str, pid: int | None = None) -> dict[str, Any]:
    """Record process ``pid`` (this one by default) of this host as the owner of ``run_id``; the record."""
    pid = os.getpid() if pid is None else int(pid)
    host, boot = this_host()
    stat = _stat(pid) if has_procfs() else None
    record = {"run_id": run_id, "pid": pid, "host": host, "boot_id": boot, "start": stat and stat[1], "at": time.time()}
    save_json(folder / OWNER_FILE, record)
    return record


def owner_of(folder: Path) -> dict[str, Any] | None:
    """The recorded owner of the run in ``folder`` (None when none was ever recorded)."""
    path = folder / OWNER_FILE
    return load_json(path) if path.is_file() else None


def local_pid(owner: dict[str, Any]) -> int | None:
    """The owner's pid when it ran on this host in this boot (None for another host)."""
    host, boot = this_host()
    if owner.get("host") != host or (boot and owner.get("boot_id") and owner["boot_id"] != boot):
        return None
    return int(owner["pid"])


def last_beat(folder: Path, owner: dict[str, Any]) -> float:
    """When the owner last showed life: its newest heartbeat, else when it claimed the run."""
    path = folder / HEARTBEAT_FILE
    beat = load_json(path) if path.is_file() else {}
    times = [float(owner.get("at") or 0.0)]
    if beat.get("pid") == owner.get("pid"):
        times.append(float(beat.get("at") or 0.0))
    return max(times)


def owner_alive(folder: Path, now: float | None = None) -> bool:
    """Whether the recorded owner of the run in ``folder`` is still there: False when none is recorded, or when
    its record or heartbeat cannot be read (nothing then vouches for a live process)."""
    try:
        owner = owner_of(folder)
        beat = None if owner is None else last_beat(folder, owner)
    except ArtifactError:
        return False
    if owner is None or beat is None:
        return False
    fresh = (time.time() if now is None else now) - beat < STALE_SECONDS
    pid = local_pid(owner)
    if pid is None:  # another host: only the heartbeat says; this host before a reboot: gone
        return fresh and owner.get("host") != this_host()[0]
    if not has_procfs() or owner.get("start") is None:
        return fresh and pid_exists(pid)
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[1] == str(owner["start"])


def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (asked of the kernel)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # there, but another user's
        return True
    return True


def process_alive(pid: int | None, run_id: str) -> bool:
    """Whether process ``pid`` runs and names ``run_id`` on its command line (a detached worker: not a zombie,
    not a reused pid)."""
    if pid is None:
        return False
    if not has_procfs():
        return pid_exists(pid)
    for _ in range(_EXEC_POLLS):
        stat = _stat(pid)
        try:
            command = (_PROC / str(pid) / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            return False
        if stat is None or stat[0] in ("Z", "X"):
            return False
        if command:
            return run_id.encode() in command
        time.sleep(_EXEC_POLL_SECONDS)  # empty while the process is still inside exec: its arguments are not set yet
    return False


def signal_owner(folder: Path, sig: int) -> int | None:
    """Send ``sig`` to the live owner of the run in ``folder`` when it runs on this host (to its process group
    when it leads one: a detached worker and its children); its pid, or None when there was none to signal.

    Raises:
        RunBusyError: when the owner is this very process (it cannot stop itself this way).
    """
    owner = owner_of(folder)
    pid = None if owner is None else local_pid(owner)
    if pid is None or not owner_alive(folder):
        return None
    if pid == os.getpid():
        raise RunBusyError(f"run {folder.name} is trained by this process ({pid}): cancel it where it was started")
    try:
        os.killpg(pid, sig) if os.getsid(pid) == pid else os.kill(pid, sig)
    except ProcessLookupError:  # ended in between
        return None
    return pid


def wait_gone(folder: Path, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the owner of the run in ``folder`` to end; whether it has."""
    deadline = time.monotonic() + timeout
    while owner_alive(folder):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


# -- the heartbeat -------------------------------------------------------------------------------------------
@contextmanager
def owning(folder: Path, run_id: str) -> Iterator[None]:
    """Own ``run_id`` for the block: claim it for this process and keep its heartbeat fresh from a daemon thread;
    at the end the owner record is released (a run nobody trains has no owner).

    Nested blocks of one process on one run share one heartbeat thread (the worker owns the run for its whole
    life, ``train_run`` inside it for the training); the outermost one releases it."""
    folder.mkdir(parents=True, exist_ok=True)
    claim(folder, run_id)
    key = folder.resolve()
    with _BEATS_LOCK:
        stop, users = _BEATS.get(key) or (threading.Event(), [0])
        users[0] += 1
        if users[0] == 1:
            _BEATS[key] = (stop, users)
            _beat(folder)
            threading.Thread(target=_beating, args=(folder, stop), name=f"heartbeat-{run_id}", daemon=True).start()
    try:
        yield
    finally:
        with _BEATS_LOCK:
            users[0] -= 1
            if users[0] == 0:
                stop.set()
                del _BEATS[key]
                release(folder)


def release(folder: Path) -> None:
    """Remove this process's owner record (and heartbeat) of the run in ``folder``; another's is left alone."""
    owner = owner_of(folder) if folder.is_dir() else None
    if owner is not None and owner.get("pid") == os.getpid() and local_pid(owner) is not None:
        for name in (OWNER_FILE, HEARTBEAT_FILE):
            (folder / name).unlink(missing_ok=True)


def _beat(folder: Path) -> None:
    save_json(folder / HEARTBEAT_FILE, {"pid": os.getpid(), "at": time.time()})


def _beating(folder: Path, stop: threading.Event) -> None:
    """The heartbeat thread: rewrite heartbeat.json until ``stop`` (a run folder deleted under it ends it)."""
    while not stop.wait(HEARTBEAT_SECONDS):
        if not folder.is_dir():
            return
        _beat(folder)

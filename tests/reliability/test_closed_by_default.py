"""Closed by default: the dashboard binds 127.0.0.1 and calls no one; the workspace is private; its lock gives up.

The server tests start the real dashboard in a subprocess with an audit hook (a ``sitecustomize`` on
``PYTHONPATH``) that writes every name lookup and connection to a non-loopback address into a file,
then open its websocket from a foreign origin, as a page of another site in the analyst's browser would.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import tomllib

from core.errors import WorkspaceError
from core.store import permissions
from core.store.files import save_json
from core.store.lock import LOCK_TIMEOUT_ENV
from core.store.workspace import DB_FILE, WORKSPACE_ENV, Workspace

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30
FOREIGN = "http://evil.example"

# Logs what would leave the machine: a name lookup of a non-local host, a connect or sendto to a non-loopback address.
OUTBOUND_HOOK = """
import ipaddress, os, sys
_LOG = os.environ["OUTBOUND_LOG"]
def _local(host):
    if host in (None, "", "localhost", "0.0.0.0", "::"):
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False
def _hook(event, args):
    if event == "socket.getaddrinfo":
        host = args[0]
    elif event in ("socket.connect", "socket.sendto") and isinstance(args[-1], tuple):
        host = args[-1][0]
    else:
        return
    if not _local(host):
        with open(_LOG, "a") as fh:
            fh.write(f"{event} {host!r}\\n")
sys.addaudithook(_hook)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(port: int, lines: list[str]) -> bytes:
    """Send one raw HTTP request to the server; the start of its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock.recv(400)


@pytest.fixture()
def watched(tmp_path: Path) -> dict[str, str]:
    """The environment of a server whose outbound attempts land in ``tmp_path/outbound.log``."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(OUTBOUND_HOOK, encoding="utf-8")
    return {
        **os.environ,
        "PYTHONPATH": str(hook),
        "OUTBOUND_LOG": str(tmp_path / "outbound.log"),
        WORKSPACE_ENV: str(tmp_path / "workspace"),
        "HF_HUB_OFFLINE": "1",
    }


@contextmanager
def serve(command: list[str], env: dict[str, str], log: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """The server started by ``command`` (its output in ``log``) once it answers its health check; stopped after."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"200 OK" not in _health(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _health(port: int) -> bytes:
    try:
        return request(port, ["GET /_stcore/health HTTP/1.1", f"Host: 127.0.0.1:{port}"])
    except OSError:
        return b""


def knock_from_a_foreign_origin(port: int) -> bytes:
    """A health check and a websocket upgrade from a page of another site; the websocket's answer."""
    host = f"Host: 127.0.0.1:{port}"
    request(port, ["GET /_stcore/health HTTP/1.1", host, f"Origin: {FOREIGN}"])
    return request(
        port,
        [
            "GET /_stcore/stream HTTP/1.1",
            host,
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            f"Origin: {FOREIGN}",
        ],
    )


# -- the dashboard's server ---------------------------------------------------------------------------------------
def test_the_config_binds_loopback_keeps_xsrf_and_cors_and_sends_no_statistics() -> None:
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    server, browser = config["server"], config["browser"]
    assert server["address"] == "127.0.0.1"
    assert server["enableXsrfProtection"] is True and server["enableCORS"] is True
    assert browser["gatherUsageStats"] is False and server["showEmailPrompt"] is False
    assert browser["serverAddress"] == "127.0.0.1"
    assert "--server.address" not in (REPO / "Makefile").read_text(encoding="utf-8")  # the config decides


def test_a_foreign_origin_is_refused_without_any_outside_call(watched: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with serve([sys.executable, "serve.py", "--server.port", str(port)], watched, log, port):
        answer = knock_from_a_foreign_origin(port)
        assert answer.startswith(b"HTTP/1.1 403"), answer  # refused: CORS protection is on
    outbound = tmp_path / "outbound.log"
    assert not outbound.exists(), outbound.read_text()
    assert f"URL: http://127.0.0.1:{port}" in log.read_text()  # bound and shown as loopback only


def test_the_hook_sees_the_lookup_plain_streamlit_makes(watched: dict[str, str], tmp_path: Path) -> None:
    """The control: without serve.py, Streamlit asks checkip.amazonaws.com when a foreign origin connects (so the
    test above would see a lookup); should this fail, Streamlit stopped asking and serve.py may go."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    with serve(command, watched, tmp_path / "server.log", port):
        assert knock_from_a_foreign_origin(port).startswith(b"HTTP/1.1 403")
    assert "checkip.amazonaws.com" in (tmp_path / "outbound.log").read_text()


# -- a private workspace ------------------------------------------------------------------------------------------
def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(params=[0o022, 0o000])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under a usual (022) and the widest (000) umask: the modes must not depend on it."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_a_new_workspace_is_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    ws = Workspace(tmp_path / "deep" / "workspace")
    ws.secret_key()
    save_json(ws.run_dir("r1") / "fusion" / "x.json", {"a": 1})  # folders made on the way
    for folder in (ws.root, ws.runs_dir, ws.run_dir("r1"), ws.run_dir("r1") / "fusion"):
        assert mode(folder) == 0o700, folder
    for file in (ws.db_path, ws.root / ".lock", ws.root / ".key", ws.run_dir("r1") / "fusion" / "x.json"):
        assert mode(file) == 0o600, file


def test_an_older_wider_workspace_is_tightened_when_opened(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "workspace")
    save_json(ws.run_dir("r1") / "config.json", {"a": 1})
    notes = ws.root / "notes.txt"  # not the workspace's: left alone
    notes.write_text("mine")
    for path, wide in ((ws.root, 0o755), (ws.runs_dir, 0o755), (ws.run_dir("r1"), 0o775), (ws.db_path, 0o644)):
        os.chmod(path, wide)
    os.chmod(ws.run_dir("r1") / "config.json", 0o666)
    os.chmod(notes, 0o644)
    Workspace(ws.root)
    assert [mode(p) for p in (ws.root, ws.runs_dir, ws.run_dir("r1"))] == [0o700] * 3
    assert mode(ws.db_path) == mode(ws.run_dir("r1") / "config.json") == 0o600
    assert mode(notes) == 0o644


def test_a_path_that_cannot_be_tightened_is_named_in_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ws = Workspace(tmp_path / "workspace")
    os.chmod(ws.db_path, 0o644)
    real_chmod = os.chmod

    def chmod(path: object, mode: int) -> None:
        if Path(str(path)).name == DB_FILE:
            raise PermissionError(1, "Operation not permitted", str(path))
        real_chmod(path, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(permissions.os, "chmod", chmod)
    with caplog.at_level("WARNING", logger="core.store.permissions"):
        Workspace(ws.root)  # opens: the file stays readable, and says so
    assert str(ws.db_path) in caplog.text and "other local users may read them" in caplog.text


# -- the workspace lock gives up, naming its holder --------------------------------------------------------------
HOLDER = """
import sys, time
from core.store.workspace import Workspace
with Workspace(sys.argv[1]).lock():
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_full_lock_fails_after_the_timeout_naming_its_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    root = tmp_path / "workspace"
    Workspace(root)
    script = tmp_path / "hold_the_lock.py"
    script.write_text(HOLDER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    secret = "RAWUSER-7f3c9e1d"  # an argument value may name a user: it is never recorded
    command = [sys.executable, str(script), str(root), "--user", secret]
    holder = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        monkeypatch.setenv(LOCK_TIMEOUT_ENV, "0.5")
        start = time.monotonic()
        with pytest.raises(WorkspaceError) as caught:
            Workspace(root)
        waited = time.monotonic() - start
        message = str(caught.value)
        assert 0.5 <= waited < 5
        assert f"process {holder.pid} on {socket.gethostname()}" in message
        assert "(hold_the_lock.py --user), holding it since" in message
        assert secret not in message and secret.encode() not in (root / ".lock").read_bytes()
        assert f"set {LOCK_TIMEOUT_ENV} to wait longer" in message
        result = cli("datasets", workspace=root)  # one clear line, exit 2
        assert result.code == 2 and f"process {holder.pid}" in result.err and "Traceback" not in result.err
    finally:
        holder.kill()
        holder.wait(10)
    Workspace(root).dataset_names()  # a killed holder leaves nothing locked


def test_a_thread_waiting_past_the_timeout_names_this_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace(tmp_path / "workspace")
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "0.2")
    held, release, errors = threading.Event(), threading.Event(), []

    def hold() -> None:
        with ws.lock():
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        held.wait(10)

        def wait() -> None:
            try:
                ws.dataset_names()
            except WorkspaceError as exc:
                errors.append(str(exc))

        waiter = threading.Thread(target=wait)
        waiter.start()
        waiter.join(10)
    finally:
        release.set()
        thread.join(10)
    assert len(errors) == 1 and f"another thread of this process: process {os.getpid()}" in errors[0]
    assert ws.dataset_names() == []  # released: usable again


@pytest.mark.parametrize("raw", ["soon", "-1", "inf", "nan"])
def test_a_bad_lock_timeout_setting_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, raw)
    with pytest.raises(WorkspaceError, match=f"{LOCK_TIMEOUT_ENV}='{raw}': expected a number of seconds"):
        Workspace(tmp_path / "workspace")

"""What the browser tests share: the Chromium they drive, and the dashboard as `make demo` serves it
(`serve.py`) on a workspace of their own.

Chromium is required: a missing browser FAILS a browser test with instructions,
unless BEHAVIORLENS_SKIP_BROWSER=1 says to skip it on purpose. Imported by the test
modules of this folder (pytest puts the folder on ``sys.path``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SKIP_ENV = "BEHAVIORLENS_SKIP_BROWSER"
START_TIMEOUT_S = 120


def require_browser() -> None:
    """Skip only when asked to; otherwise fail loudly when chromium or playwright is missing."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: browser test skipped on request")
    if not CHROMIUM.is_file():
        pytest.fail(
            f"chromium is missing at {CHROMIUM}: install Debian's chromium package "
            f"(`make browser-deps`) or set {SKIP_ENV}=1 to skip the browser test",
            pytrace=False,
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail(f"the playwright package is missing: pip install -e '.[test]' (or set {SKIP_ENV}=1)", pytrace=False)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``/_stcore/health`` until it answers ok; fail with the server log otherwise."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"streamlit did not answer {url}/_stcore/health in {START_TIMEOUT_S}s:\n{log.read_text()[-4000:]}")


@contextmanager
def serve(workspace: Path, log: Path, args: Sequence[str] = ()) -> Iterator[str]:
    """The dashboard as ``make demo`` serves it (``serve.py``: `streamlit run app.py`, closed) on 127.0.0.1 and
    a free port over ``workspace`` (its output in ``log``), with more streamlit options in ``args``; the URL."""
    port = free_port()
    env = {**os.environ, "BEHAVIORLENS_WORKSPACE": str(workspace)}
    cmd = [
        sys.executable,
        str(REPO / "serve.py"),
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        *args,
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@contextmanager
def browser_page(url: str, timeout_ms: int) -> Iterator[Any]:
    """A Chromium page (1400 x 1000, ``timeout_ms`` by default) opened on ``url``; the browser closes after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(timeout_ms)
            page.goto(url, wait_until="domcontentloaded")
            yield page
        finally:
            browser.close()

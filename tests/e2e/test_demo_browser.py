"""`make demo` in a real browser: `behaviorlens sample --train`, then `serve.py` (as `make demo`); Explain, never Train.

The demo run is the real background process `sample --train` starts, with the tiny model and BERT
(``BEHAVIORLENS_DEMO_CONFIG``) so that it trains in seconds. It is frozen (SIGSTOP) until the Explain
page shows it training, so that the wait is seen however fast the machine is, then resumed: the page
fills in by itself (its fragment polls the run) with the first user's history timeline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from browser_support import REPO, browser_page, require_browser, serve  # tests/e2e/browser_support.py

from core.runs.background import BACKGROUND_FILE, DEMO_CONFIG_ENV, process_alive

pytestmark = pytest.mark.browser

RENDER_TIMEOUT_MS = 120_000
TRAIN_TIMEOUT_MS = 300_000  # the tiny demo run, on a busy CPU


def start_demo(workspace: Path, demo_config: Path) -> tuple[str, int]:
    """`behaviorlens sample --train` as `make demo` runs it; (run ID, pid of its training process)."""
    env = {
        **os.environ,
        "BEHAVIORLENS_WORKSPACE": str(workspace),
        DEMO_CONFIG_ENV: str(demo_config),
        "PYTHONPATH": str(REPO),
    }
    cmd = [sys.executable, "-m", "core.cli", "sample", "--train", "--json"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["train"]
    assert report["started"] is True, report
    pid = json.loads((workspace / "runs" / report["run"] / BACKGROUND_FILE).read_text())["pid"]
    return report["run"], int(pid)


def test_the_demo_explain_page_fills_in_by_itself(tmp_path: Path, demo_config: Path) -> None:
    from playwright.sync_api import expect

    require_browser()
    workspace = tmp_path / "workspace"
    run_id, pid = start_demo(workspace, demo_config)
    os.killpg(pid, signal.SIGSTOP)  # still training when the page first draws, however fast the machine
    wait = RENDER_TIMEOUT_MS
    try:
        with serve(workspace, tmp_path / "streamlit.log") as url, browser_page(url, wait) as page:
            expect(page.get_by_role("heading", name="BehaviorLens")).to_be_visible(timeout=wait)
            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Explain").click()
            expect(page.get_by_role("heading", name="Explain", exact=True)).to_be_visible(timeout=wait)
            waiting = page.get_by_test_id("stAlert").filter(has_text="Training the demo model on dataset sample")
            expect(waiting).to_contain_text(run_id, timeout=wait)
            expect(waiting).to_contain_text("This page fills in by itself", timeout=wait)
            expect(page.get_by_test_id("stProgress")).to_have_count(1, timeout=wait)
            assert page.get_by_text("No trained run").count() == 0
            os.killpg(pid, signal.SIGCONT)
            timeline = (
                page.get_by_test_id("stPlotlyChart")
                .filter(has=page.locator("g.scatterlayer"))
                .filter(has_text="Event timeline: attribution per event")
            )
            expect(timeline).to_have_count(1, timeout=TRAIN_TIMEOUT_MS)  # no click: the page polls
            expect(timeline.locator("g.scatterlayer path.point").first).to_be_visible(timeout=wait)
            expect(page.get_by_role("combobox", name="Run")).to_have_value(run_id, timeout=wait)
            expect(waiting).to_have_count(0, timeout=wait)
            summary = page.get_by_test_id("stAlert").filter(has_text="Times count back from this history")
            expect(summary).to_contain_text("is recommended", timeout=wait)
            assert page.get_by_test_id("stException").count() == 0
    finally:
        if process_alive(pid, run_id):  # a failure above: never leave it frozen or training
            os.killpg(pid, signal.SIGCONT)
            os.killpg(pid, signal.SIGKILL)

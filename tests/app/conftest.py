"""Fixtures of the app tests: Streamlit in server mode, fresh caches, app.py opened on a workspace."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from page_support import APP, DATASET, clear_caches  # tests/app/page_support.py
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest


@pytest.fixture()
def server_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every AppTest run see Streamlit as a live server does after its first run."""
    # A ``pages/`` folder next to app.py puts Streamlit in its legacy multipage mode until app.py's
    # ``st.navigation`` switches it off for the whole process. AppTest resets that class flag before
    # every run; on a page other than the start page, ``route_through_frame`` then reruns the script,
    # and a rerun drops button clicks. Keeping the flag off, as it stays in a server, lets clicks
    # through; ``test_page_opened_first_routes_through_the_frame`` (test_app.py) covers legacy mode.
    original = PagesManager.__init__

    def init(self: PagesManager, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture()
def fresh_caches() -> Iterator[None]:
    """Clear Streamlit's data and resource caches before and after the test."""
    clear_caches()
    yield
    clear_caches()


@pytest.fixture()
def open_app(monkeypatch: pytest.MonkeyPatch, server_mode: None, fresh_caches: None) -> Callable[..., AppTest]:
    """Open app.py in server mode: open_app(root, run_id, page, timeout=120, **state) -> the AppTest, run."""

    def open_(
        root: Path | None = None,
        run_id: str | None = None,
        page: str | None = None,
        *,
        timeout: float = 120,
        **state: object,
    ) -> AppTest:
        """On workspace ``root`` with DATASET picked (else the test's own), ``run_id`` and ``state`` in the session;
        then on ``page``. Caches are cleared first."""
        if root is not None:
            monkeypatch.setenv("BEHAVIORLENS_WORKSPACE", str(root))
        clear_caches()
        at = AppTest.from_file(APP, default_timeout=timeout)
        if root is not None:
            at.session_state["dataset"] = DATASET
        if run_id is not None:
            at.session_state["run"] = run_id
        for key, value in state.items():
            at.session_state[key] = value
        at.run()
        if page is not None:
            at.switch_page(page).run()
        return at

    return open_

"""Sign-in for a shared dashboard, in a real browser: the dashboard as ``make demo`` serves it, with a test-only
secrets.toml (``--secrets.files``) pointing ``st.login`` at a local OpenID Connect provider on 127.0.0.1
(tests/e2e/oidc_provider.py), and Chromium going through the whole code flow (state, nonce, PKCE, RS256 ID token).

Chromium is required: a missing browser FAILS these tests with instructions, unless BEHAVIORLENS_SKIP_BROWSER=1
says to skip them on purpose.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import browser_page, require_browser, serve  # tests/e2e/browser_support.py
from oidc_provider import Provider, oidc_provider  # tests/e2e/oidc_provider.py

pytestmark = pytest.mark.browser

WAIT_MS = 120_000  # the first page of a fresh workspace puts the sample dataset in it on a busy CPU
CLIENT_ID = "behaviorlens-test"
ANALYST, VIEWER, STRANGER = "ana@lab.test", "vic@partner.test", "eve@else.test"
USERS = {ANALYST: "Ana", VIEWER: "Vic", STRANGER: "Eve"}
LOG = "user_id,item_id,timestamp,behavior\nu1,i1,2024-01-01,view\nu2,i1,2024-01-02,purchase\n"


def secrets_toml(issuer: str, client_secret: str) -> str:
    """The test's secrets.toml: the provider at ``issuer``, one analyst, and viewers by domain."""
    return f"""
[auth]
redirect_uri = "http://127.0.0.1:{{port}}/oauth2callback"
cookie_secret = "{secrets.token_urlsafe(32)}"
client_id = "{CLIENT_ID}"
client_secret = "{client_secret}"
server_metadata_url = "{issuer}/.well-known/openid-configuration"

[behaviorlens.access]
analysts = ["{ANALYST}"]
viewers = ["@partner.test"]
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Provider]]:
    """(the dashboard's URL, the provider) for every test of the module: one server, one provider."""
    require_browser()
    root = tmp_path_factory.mktemp("signin")
    client_secret = secrets.token_urlsafe(16)
    with oidc_provider(CLIENT_ID, client_secret, USERS) as provider:
        (root / "secrets.toml").write_text(secrets_toml(provider.issuer, client_secret))
        args = ["--secrets.files", str(root / "secrets.toml")]
        with serve(root / "workspace", root / "streamlit.log", args) as url:
            provider.redirect_uris.add(f"{url}/oauth2callback")
            yield url, provider


def settled(page: Any) -> None:
    """Wait until the app's script run is over (what it draws is all there)."""
    from playwright.sync_api import expect

    app = page.get_by_test_id("stApp")
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=WAIT_MS)


def shown(locator: Any) -> str:
    """The text a reader sees (the invisible word joiners that stop autolinks removed)."""
    return str(locator.inner_text()).replace("\u2060", "")


def sign_in(page: Any, provider: Provider, email: str) -> None:
    """Press Sign in, choose ``email`` at the provider, and wait to be back on the dashboard."""
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name=f"Sign in as {email}").click()
    settled(page)
    assert "POST /token" in provider.seen, provider.seen  # the code was exchanged, server to provider


def sidebar_nav(page: Any) -> list[str]:
    """The page names the router registered, as the sidebar lists them."""
    from playwright.sync_api import expect

    nav = page.get_by_test_id("stSidebarNav")
    expect(nav).to_be_visible(timeout=WAIT_MS)
    return [shown(link).split("\n")[-1].strip() for link in nav.get_by_role("link").all()]  # after the icon


def test_a_signed_out_visitor_sees_no_data_only_the_sign_in_button(site: tuple[str, Provider]) -> None:
    from playwright.sync_api import expect

    url, _ = site
    with browser_page(url, WAIT_MS) as page:
        for path in ("", "/data", "/train", "/explain"):
            page.goto(f"{url}{path}")
            expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=WAIT_MS)
            settled(page)
            text = shown(page.get_by_test_id("stApp"))
            assert "sample" not in text and "event" not in text and "Dataset" not in text, text
            for hidden in ("stSidebarNav", "stDataFrame", "stFileUploader", "stForm", "stSelectbox"):
                assert page.get_by_test_id(hidden).count() == 0, (path, hidden)


def test_a_viewer_reaches_the_analysis_pages_but_not_upload_or_train(site: tuple[str, Provider]) -> None:
    from playwright.sync_api import expect

    url, provider = site
    with browser_page(url, WAIT_MS) as page:
        sign_in(page, provider, VIEWER)
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_text("Role: viewer")).to_be_visible(timeout=WAIT_MS)
        assert f"Signed in as {VIEWER}" in shown(sidebar)
        expect(sidebar.get_by_role("button", name="Sign out")).to_be_visible()
        assert sidebar_nav(page) == ["Home", "Influence", "Explain", "Fusion", "Export"]
        for path in ("/data", "/train"):
            page.goto(f"{url}{path}")
            expect(page.get_by_role("dialog")).to_contain_text("Page not found", timeout=WAIT_MS)
            expect(sidebar.get_by_text("Role: viewer")).to_be_visible(timeout=WAIT_MS)
            settled(page)
            text = shown(page.get_by_test_id("stMain"))
            assert "Upload a log" not in text and "Audit log" not in text and "Saved runs" not in text, text
            for form in ("stFileUploader", "stForm"):
                assert page.get_by_test_id(form).count() == 0, (path, form)
            assert page.get_by_role("heading", name="Data", exact=True).count() == 0
            assert page.get_by_role("heading", name="Train", exact=True).count() == 0


def test_an_analyst_uploads_and_trains_and_is_the_audited_actor(site: tuple[str, Provider], tmp_path: Path) -> None:
    from playwright.sync_api import expect

    url, provider = site
    log = tmp_path / "shop.csv"
    log.write_text(LOG)
    with browser_page(url, WAIT_MS) as page:
        sign_in(page, provider, ANALYST)
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_text("Role: analyst")).to_be_visible(timeout=WAIT_MS)
        assert sidebar_nav(page) == ["Home", "Data", "Train", "Influence", "Explain", "Fusion", "Export"]
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Train").click()
        expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible(timeout=WAIT_MS)
        expect(page.get_by_test_id("stForm").get_by_role("button", name="Train", exact=True)).to_be_visible(
            timeout=WAIT_MS
        )
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Data").click()
        expect(page.get_by_role("heading", name="Upload a log")).to_be_visible(timeout=WAIT_MS)
        page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(log))
        page.get_by_test_id("stForm").get_by_role("button", name="Ingest", exact=True).click()
        expect(sidebar.get_by_text("shop: 2 events")).to_be_visible(timeout=WAIT_MS)
        settled(page)  # the rerun after the ingest is over: the expander opened next stays open
        expander = page.get_by_test_id("stExpander").filter(has_text="Audit log")
        expander.get_by_text("Audit log: who ingested, trained, exported and forgot what").click()
        audit = expander.get_by_test_id("stDataFrame")
        expect(audit).to_be_visible(timeout=WAIT_MS)
        rows = audit.locator("tr")  # the grid paints a canvas; its rows are the canvas's (hidden) table
        expect(rows.filter(has_text="ingest").filter(has_text="shop").filter(has_text=ANALYST)).to_have_count(1)


def test_someone_on_no_list_is_told_so_and_can_sign_out(site: tuple[str, Provider]) -> None:
    from playwright.sync_api import expect

    url, provider = site
    with browser_page(url, WAIT_MS) as page:
        sign_in(page, provider, STRANGER)
        alert = page.get_by_test_id("stAlert")
        expect(alert).to_contain_text("No access", timeout=WAIT_MS)
        assert STRANGER in shown(alert)
        assert "sample" not in shown(page.get_by_test_id("stApp"))
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=WAIT_MS)
        settled(page)
        assert "No access" not in shown(page.get_by_test_id("stApp"))

"""Sign-in on the pages (pages/_access.py): what a signed-out visitor, a viewer, an analyst and an unlisted person
see, the router registering only a role's pages, acting parts refusing a viewer, and the e-mail in the audit log.

``AppTest.secrets`` stands for secrets.toml and ``AppTest.user`` for the identity cookie that ``st.login`` leaves;
the real OpenID Connect round trip is tests/e2e/test_signin.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from page_support import APP, unescape  # tests/app/page_support.py
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.util import patch_config_options

from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.store import audit
from core.store.workspace import Workspace

AUTH = {
    "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
    "cookie_secret": "a long random string of characters",
    "client_id": "behaviorlens",
    "client_secret": "client secret",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}
ACCESS = {"analysts": ["ana@lab.test"], "viewers": ["@partner.test"]}
SECRETS = {"auth": AUTH, "behaviorlens": {"access": ACCESS}}
ANALYST = {"is_logged_in": True, "email": "Ana@Lab.test", "name": "Ana"}
VIEWER = {"is_logged_in": True, "email": "vic@partner.test", "name": "Vic"}
SIGNED_OUT = {"is_logged_in": False}
LOG = "user_id,item_id,timestamp,behavior\nu1,i1,2024-01-01,view\nu2,i1,2024-01-02,purchase\n"


@pytest.fixture()
def signed_in(server_mode: None, fresh_caches: None) -> Callable[..., AppTest]:
    """signed_in(user, secrets=SECRETS) -> app.py run once as ``user`` (an ``st.user`` dict) under ``secrets``."""

    def open_(user: dict[str, Any], secrets: dict[str, Any] = SECRETS) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        at.secrets, at.user = secrets, user
        return at.run()

    return open_


def texts(at: AppTest) -> str:
    """Every text, title, caption, message and button label on the page, as the reader sees it."""
    kinds = ("title", "markdown", "caption", "text", "error", "info", "warning", "success", "button")
    parts = [getattr(el, "value", None) or getattr(el, "label", "") for kind in kinds for el in at.get(kind)]
    return unescape("\n".join(str(p) for p in parts)).replace("\u2060", "")


def test_a_signed_out_visitor_sees_only_the_sign_in_button(signed_in: Callable[..., AppTest]) -> None:
    at = signed_in(SIGNED_OUT)
    assert not at.exception and not at.error
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.dataframe and not at.selectbox and not at.sidebar.caption  # no dataset, no workspace status
    assert "sample" not in texts(at) and "events" not in texts(at)
    with pytest.raises(ValueError, match="registered"):
        at.switch_page("pages/influence.py")  # the router registered the sign-in page alone


def test_a_viewer_sees_the_analysis_pages_but_not_data_or_train(signed_in: Callable[..., AppTest]) -> None:
    at = signed_in(VIEWER)
    assert not at.exception and not at.error
    assert "sample" in at.dataframe[0].value["name"].tolist()  # Home
    sidebar = [unescape(c.value).replace("\u2060", "") for c in at.sidebar.caption]
    assert "Signed in as vic@partner.test" in sidebar and "Role: viewer" in sidebar
    assert [b.label for b in at.sidebar.button] == ["Sign out"]
    assert not at.get("page_link")  # no way to the Data page from Home
    for page in ("pages/data.py", "pages/train.py"):
        with pytest.raises(ValueError, match="registered"):
            at.switch_page(page)
    at.switch_page("pages/influence.py").run()
    assert not at.exception and at.title[0].value == "Influence"


def test_an_analyst_gets_the_upload_form_and_the_train_page(signed_in: Callable[..., AppTest]) -> None:
    at = signed_in(ANALYST)
    sidebar = [unescape(c.value).replace("\u2060", "") for c in at.sidebar.caption]
    assert "Signed in as Ana@Lab.test" in sidebar and "Role: analyst" in sidebar
    at.switch_page("pages/data.py").run()
    assert not at.exception and not at.error
    assert at.file_uploader(key="events_upload") is not None
    assert "Audit log: who ingested, trained, exported and forgot what" in [e.label for e in at.expander]
    at.switch_page("pages/train.py").run()
    assert not at.exception and at.title[0].value == "Train"
    assert "Train" in [b.label for b in at.button]


def test_an_analysts_ingest_is_audited_under_their_email(
    signed_in: Callable[..., AppTest], _isolated_workspace_env: Path
) -> None:
    at = signed_in(ANALYST)
    at.switch_page("pages/data.py").run()
    at.file_uploader(key="events_upload").set_value(("shop.csv", LOG.encode(), "text/csv")).run()
    next(b for b in at.button if b.label == "Ingest").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    log = audit.entries(Workspace(_isolated_workspace_env)).to_dict("records")
    assert (log[0]["action"], log[0]["target"], log[0]["actor"]) == ("ingest", "shop", "Ana@Lab.test")


def test_a_person_on_no_list_is_told_so_with_their_email_and_can_sign_out(signed_in: Callable[..., AppTest]) -> None:
    at = signed_in({"is_logged_in": True, "email": "eve@else.test"})
    assert not at.exception
    assert [unescape(e.value).replace("\u2060", "") for e in at.error] == [
        "No access: eve@else.test is not on the access lists of this dashboard. Ask whoever runs it to add the address."
    ]
    assert [b.label for b in at.button] == ["Sign out"]
    assert not at.dataframe and not at.sidebar.caption and "sample" not in texts(at)


def test_an_address_the_provider_has_not_verified_gets_no_access(signed_in: Callable[..., AppTest]) -> None:
    at = signed_in({**ANALYST, "email_verified": False})
    assert "is not verified by the sign-in provider" in texts(at)
    assert not at.dataframe


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({"auth": AUTH}, "nobody is let in: add a [behaviorlens.access] table"),
        ({"auth": AUTH, "behaviorlens": {"access": {"analysts": "ana@lab.test"}}}, "analysts must be a list"),
        ({"behaviorlens": {"access": ACCESS}}, "no [auth] table"),
    ],
)
def test_a_bad_configuration_keeps_everyone_out_with_its_message(
    signed_in: Callable[..., AppTest], secrets: dict[str, Any], message: str
) -> None:
    at = signed_in(ANALYST, secrets)
    assert not at.exception
    assert len(at.error) == 1 and message in unescape(at.error[0].value)
    assert unescape(at.error[0].value).startswith(
        "The dashboard stays closed until its sign-in configuration is fixed."
    )
    assert not at.button and not at.dataframe and not at.sidebar.caption


def test_without_sign_in_the_local_dashboard_is_unchanged(signed_in: Callable[..., AppTest]) -> None:
    at = signed_in({"email": "test@example.com"}, secrets={})  # AppTest's default user: nobody signed in
    assert not at.exception and not at.error
    assert not [c for c in at.sidebar.caption if "Signed in" in c.value] and not at.sidebar.button
    at.switch_page("pages/data.py").run()
    assert at.file_uploader(key="events_upload") is not None


SCRIPT = """
from pages._privacy import _forget
from pages._access import analyst_only
from pages._ingest_form import run_ingest
import streamlit as st
st.text(f"may train: {analyst_only('train a model')}")
_forget("u1", None)
run_ingest(None, None, None, None)  # refused before it reads any of them
"""


def test_the_acting_parts_refuse_a_viewer(_isolated_workspace_env: Path, tmp_path: Path, fresh_caches: None) -> None:
    (tmp_path / "log.csv").write_text(LOG)
    ws = Workspace(_isolated_workspace_env)
    ingest(ws, tmp_path / "log.csv", options=IngestOptions(name="shop"))
    at = AppTest.from_string(SCRIPT, default_timeout=60)
    at.secrets, at.user = SECRETS, VIEWER
    at.run()
    assert not at.exception
    assert at.text[0].value == "may train: False"
    refusals = [unescape(e.value).replace("\u2060", "") for e in at.error]
    assert refusals == [
        f"Only analysts can {action}: vic@partner.test is not signed in as an analyst."
        for action in ("train a model", "forget a user", "ingest a log")
    ]
    assert ws.dataset("shop").n_events == 2  # u1 is still there


def test_a_secrets_file_that_cannot_be_read_keeps_everyone_out(
    server_mode: None, fresh_caches: None, tmp_path: Path
) -> None:
    broken = tmp_path / "secrets.toml"
    broken.write_text('[auth]\nredirect_uri = "http://127.0.0.1:8501/oauth2callback\n')  # unterminated string
    at = AppTest.from_file(APP, default_timeout=60)
    at.user = ANALYST
    with patch_config_options({"secrets.files": [str(broken)]}):  # where Streamlit looks for secrets.toml
        at.run()
    assert not at.exception
    assert len(at.error) == 1 and "secrets.toml cannot be read: Error parsing secrets file" in unescape(
        at.error[0].value
    )
    assert not at.button and not at.dataframe and not at.sidebar.caption

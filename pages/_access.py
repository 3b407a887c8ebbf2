"""Sign-in for a shared dashboard: who is signed in, their role, what the role may open, and the sign-in screens.

Off without ``[auth]`` in secrets.toml: the dashboard is the local analyst's, every page open as before. On,
every page needs ``st.login`` and a role from ``[behaviorlens.access]`` (:mod:`core.access`): the frame
(app.py) registers only the pages of the role, and what changes the workspace (an ingest, a training, a forget)
checks the role again with :func:`analyst_only`. A configuration error keeps everyone out, with its message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

from core.access import ANALYST, DEFAULT_PROVIDER, access_policy, is_verified
from core.errors import AccessConfigError
from pages._shared import plain

ANALYST_PAGES = frozenset({"data", "train"})  # URL paths only an analyst may open: upload, train, forget
NO_SECRETS = "no-secrets-found"  # Streamlit's error_id when no secrets.toml exists: sign-in off
NO_ACCESS = "is not on the access lists of this dashboard. Ask whoever runs it to add the address."
UNVERIFIED = "is not verified by the sign-in provider: verify it there, then sign out and in again."


@dataclass(frozen=True)
class Access:
    """What this session may do: ``role`` (``analyst``, ``viewer``; None: not let in), the signed-in ``email``
    (None when sign-in is off or nobody is signed in), the sign-in ``providers``, a configuration ``problem`` and
    whether the provider ``verified`` the address."""

    role: str | None
    email: str | None = None
    providers: tuple[str, ...] = ()
    problem: str | None = None
    verified: bool = True

    @property
    def signed_in(self) -> bool:
        return self.email is not None


def read_secrets() -> dict[str, Any]:
    """secrets.toml as a dict; empty when there is none. A file that cannot be read raises (closed)."""
    try:
        return st.secrets.to_dict()
    except StreamlitSecretNotFoundError as exc:
        if getattr(exc, "error_id", None) == NO_SECRETS:
            return {}
        raise AccessConfigError(f"secrets.toml cannot be read: {exc}") from exc


def current_access() -> Access:
    """The access of this session, from secrets.toml and ``st.user``; read on every run, never kept."""
    try:
        policy = access_policy(read_secrets())
    except AccessConfigError as exc:
        return Access(None, problem=str(exc))
    if policy is None:
        return Access(ANALYST)
    if not st.user.get("is_logged_in"):
        return Access(None, providers=policy.providers)
    email, verified = st.user.get("email"), st.user.get("email_verified")
    return Access(
        policy.role_of(email, verified),
        str(email or "(no e-mail address)"),
        policy.providers,
        verified=is_verified(verified),
    )


def may_open(role: str | None, url_path: str) -> bool:
    """Whether ``role`` may open the page at ``url_path``: an analyst every page, a viewer all but Data and Train."""
    return role == ANALYST or (role is not None and url_path not in ANALYST_PAGES)


def analyst_only(action: str) -> bool:
    """True when this session may ``action`` (an analyst, or sign-in off); else say why and return False."""
    access = current_access()
    if access.role == ANALYST:
        return True
    who = f"{access.email} is" if access.email else "you are"
    st.error(plain(f"Only analysts can {action}: {who} not signed in as an analyst."))
    return False


def sign_in_page() -> None:
    """The one page a session without a role sees: the configuration problem, a sign-in button, or no access."""
    access = current_access()
    st.title("BehaviorLens")
    if access.problem:
        st.error(plain(f"The dashboard stays closed until its sign-in configuration is fixed. {access.problem}"))
    elif not access.signed_in:
        st.write("This dashboard is shared: sign in to open it.")
        for provider in access.providers:
            label = "Sign in" if provider == DEFAULT_PROVIDER else f"Sign in with {provider}"
            if st.button(label, key=f"sign_in_{provider}", type="primary", icon=":material/login:"):
                st.login(provider)
    else:
        st.error(plain(f"No access: {access.email} {NO_ACCESS if access.verified else UNVERIFIED}"))
        sign_out_button(st)


def identity_sidebar(access: Access) -> None:
    """Who is signed in, as which role, and the sign-out button (nothing when sign-in is off)."""
    if not access.signed_in:
        return
    st.sidebar.caption(plain(f"Signed in as {access.email}"))
    st.sidebar.caption(plain(f"Role: {access.role}"))
    sign_out_button(st.sidebar)


def sign_out_button(where: Any) -> None:
    """The sign-out button in ``where`` (``st`` or ``st.sidebar``)."""
    if where.button("Sign out", key="sign_out", icon=":material/logout:"):
        st.logout()

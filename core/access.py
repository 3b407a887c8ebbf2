"""Who may use a shared dashboard: the access lists of secrets.toml and the role they give an e-mail address.

Sign-in is on when secrets.toml has an ``[auth]`` table (Streamlit's OpenID Connect settings: ``redirect_uri``,
``cookie_secret``, then ``client_id``, ``client_secret`` and ``server_metadata_url`` for the default provider or
in one ``[auth.NAME]`` table per provider). Who gets in is listed apart, since every table inside ``[auth]`` is a
provider to Streamlit::

    [behaviorlens.access]
    analysts = ["alice@example.org", "@research.example.org"]   # upload, train, forget, and all a viewer sees
    viewers = ["@example.org"]                                    # Influence, Explain, Fusion, Export

An entry is an e-mail address or, starting with ``@``, every address of exactly that domain (not its
subdomains); case does not matter. Someone on both lists is an analyst. A malformed table raises
:class:`~core.errors.AccessConfigError` naming the key, the value and what was expected, and so does a
configuration that would let nobody in (``[auth]`` without access lists, lists without ``[auth]``): the
dashboard then stays closed. Without either table, :func:`access_policy` returns None and sign-in is off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import AccessConfigError

ANALYST = "analyst"
VIEWER = "viewer"
AUTH_TABLE = "auth"  # Streamlit's
OWN_TABLE = "behaviorlens"
ACCESS_TABLE = f"{OWN_TABLE}.access"
LIST_KEYS = {"analysts": ANALYST, "viewers": VIEWER}  # key in [behaviorlens.access] -> the role it grants
DEFAULT_PROVIDER = "default"  # st.login()'s provider when [auth] itself holds the client settings
AUTH_KEYS = ("redirect_uri", "cookie_secret")
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
CALLBACK_PATH = "/oauth2callback"  # where the provider sends the browser back (Streamlit's route)
_DOMAIN = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
_EMAIL_ENTRY = re.compile(rf"[^@\s*]+@{_DOMAIN}")
_DOMAIN_ENTRY = re.compile(rf"@{_DOMAIN}")
EXAMPLE = '["alice@example.org", "@example.org"]'
NOBODY = (
    f"add a [{ACCESS_TABLE}] table to secrets.toml with analysts = [...] and/or viewers = [...], each a list of "
    f"e-mail addresses and @domains such as {EXAMPLE}"
)


@dataclass(frozen=True)
class Grant:
    """One role's list: exact addresses and whole domains, lower-cased."""

    emails: frozenset[str]
    domains: frozenset[str]  # without the "@"

    def admits(self, email: str) -> bool:
        """Whether ``email`` (lower-cased) is listed or of a listed domain."""
        local, at, domain = email.rpartition("@")
        return email in self.emails or (bool(local and at) and domain in self.domains)

    def __bool__(self) -> bool:
        return bool(self.emails or self.domains)


@dataclass(frozen=True)
class AccessPolicy:
    """The analysts' and viewers' lists, and the sign-in providers (``default`` or ``[auth.NAME]`` names)."""

    analysts: Grant
    viewers: Grant
    providers: tuple[str, ...]

    def role_of(self, email: object, verified: object = None) -> str | None:
        """``analyst``, ``viewer`` or None (no access) for a signed-in ``email``; ``verified`` is the provider's
        ``email_verified`` claim: an address it says is unverified gets no role."""
        if not isinstance(email, str) or not email.strip() or not is_verified(verified):
            return None
        address = email.strip().lower()
        if self.analysts.admits(address):
            return ANALYST
        return VIEWER if self.viewers.admits(address) else None


def is_verified(claim: object) -> bool:
    """False only when the provider says the address is not verified (``email_verified`` false, or "false" as
    some providers send it); a provider that says nothing is trusted with its addresses."""
    return not (claim is False or (isinstance(claim, str) and claim.strip().lower() == "false"))


def access_policy(secrets: Mapping[str, Any]) -> AccessPolicy | None:
    """The policy of a secrets.toml (as a mapping); None when it has neither ``[auth]`` nor ``[behaviorlens]``
    (sign-in off). A malformed or closed configuration raises :class:`AccessConfigError`."""
    auth, own = secrets.get(AUTH_TABLE), secrets.get(OWN_TABLE)
    access = _table(own, OWN_TABLE).get("access") if own is not None else None
    if auth is None and access is None:
        return None
    if auth is None:
        raise AccessConfigError(
            f"secrets.toml has a [{ACCESS_TABLE}] table but no [{AUTH_TABLE}] table, so nobody can sign in: add "
            f"[{AUTH_TABLE}] with {', '.join(AUTH_KEYS + PROVIDER_KEYS)} (see the README, Sign-in for a shared "
            "dashboard)"
        )
    providers = sign_in_providers(auth)
    if access is None:
        raise AccessConfigError(f"Sign-in is on ([{AUTH_TABLE}] in secrets.toml) but nobody is let in: {NOBODY}")
    grants = read_lists(_table(access, ACCESS_TABLE))
    if not any(grants.values()):
        raise AccessConfigError(f"[{ACCESS_TABLE}] lists nobody, so nobody can sign in: {NOBODY}")
    return AccessPolicy(grants[ANALYST], grants[VIEWER], providers)


def read_lists(access: Mapping[str, Any]) -> dict[str, Grant]:
    """The grant of each role from ``[behaviorlens.access]``; an unknown key or a bad entry raises."""
    unknown = sorted(set(access) - set(LIST_KEYS))
    if unknown:
        raise AccessConfigError(
            f"[{ACCESS_TABLE}] has an unknown key {unknown[0]!r}: expected only "
            f"{' and '.join(repr(k) for k in LIST_KEYS)}, each a list such as {EXAMPLE}"
        )
    return {role: read_list(key, access.get(key, [])) for key, role in LIST_KEYS.items()}


def read_list(key: str, entries: object) -> Grant:
    """One list of e-mail addresses and @domains, lower-cased; anything else raises, naming the entry."""
    where = f"[{ACCESS_TABLE}] {key}"
    if not isinstance(entries, list):
        raise AccessConfigError(
            f"{where} must be a list of e-mail addresses and @domains such as {EXAMPLE}, not {_shown(entries)}"
        )
    emails: set[str] = set()
    domains: set[str] = set()
    for i, entry in enumerate(entries):
        text = entry.strip().lower() if isinstance(entry, str) else None
        if text is not None and _DOMAIN_ENTRY.fullmatch(text):
            domains.add(text[1:])
        elif text is not None and _EMAIL_ENTRY.fullmatch(text):
            emails.add(text)
        else:
            hint = ' (no wildcards: "@example.org" is every address of that domain)' if "*" in str(entry) else ""
            raise AccessConfigError(
                f"{where}[{i}] is {_shown(entry)}: expected an e-mail address (alice@example.org) or a domain "
                f"starting with @ (@example.org){hint}"
            )
    return Grant(frozenset(emails), frozenset(domains))


def sign_in_providers(auth: object) -> tuple[str, ...]:
    """The providers ``[auth]`` sets up (``default`` when it holds the client settings itself, then each
    ``[auth.NAME]``), after checking what Streamlit needs to sign anyone in."""
    table = _table(auth, AUTH_TABLE)
    missing = [key for key in AUTH_KEYS if not _filled(table.get(key))]
    if missing:
        raise AccessConfigError(f"[{AUTH_TABLE}] in secrets.toml lacks {', '.join(missing)}: nobody can sign in")
    redirect = str(table["redirect_uri"])
    if not redirect.rstrip("/").endswith(CALLBACK_PATH):
        raise AccessConfigError(
            f"[{AUTH_TABLE}] redirect_uri is {redirect!r}: expected the dashboard's address ending in "
            f"{CALLBACK_PATH}, such as 'https://behaviorlens.example.org{CALLBACK_PATH}'"
        )
    found = [(DEFAULT_PROVIDER, table, AUTH_TABLE)] if any(k in table for k in PROVIDER_KEYS) else []
    for name, value in table.items():
        if isinstance(value, Mapping) and any(k in value for k in PROVIDER_KEYS):
            found.append((str(name), value, f"{AUTH_TABLE}.{name}"))
    if not found:
        raise AccessConfigError(
            f"[{AUTH_TABLE}] in secrets.toml names no OpenID Connect provider: add "
            f"{', '.join(PROVIDER_KEYS)} to it (or to an [{AUTH_TABLE}.NAME] table per provider)"
        )
    for _, settings, where in found:
        lacking = [key for key in PROVIDER_KEYS if not _filled(settings.get(key))]
        if lacking:
            raise AccessConfigError(f"[{where}] in secrets.toml lacks {', '.join(lacking)}: nobody can sign in")
    return tuple(name for name, _, _ in found)


def _table(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise AccessConfigError(f"{name} in secrets.toml must be a table ([{name}]), not {_shown(value)}")
    return value


def _filled(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _shown(value: object) -> str:
    """A configuration value as the message shows it: its TOML type and its text."""
    if isinstance(value, Mapping):
        return f"a table of {', '.join(map(str, value)) or 'nothing'}"
    kind = {str: "the text", bool: "the boolean", int: "the number", float: "the number", list: "the list"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}"

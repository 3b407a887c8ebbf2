"""Who a shared dashboard lets in (core.access): roles from the access lists, and configurations refused by name."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from core.access import ANALYST, DEFAULT_PROVIDER, VIEWER, AccessPolicy, access_policy, is_verified
from core.errors import AccessConfigError, BehaviorLensError

AUTH = {
    "redirect_uri": "https://behaviorlens.example.org/oauth2callback",
    "cookie_secret": "a long random string of characters",
    "client_id": "behaviorlens",
    "client_secret": "client secret",
    "server_metadata_url": "https://login.example.org/.well-known/openid-configuration",
}
LISTS = {"analysts": ["Alice@Example.org", "@Research.Example.org"], "viewers": ["@example.org", "vic@partner.test"]}


def secrets(auth: Any = AUTH, access: Any = LISTS, **more: Any) -> dict[str, Any]:
    """A secrets.toml as Streamlit reads it: [auth] and [behaviorlens.access], either left out with None."""
    out: dict[str, Any] = dict(more)
    if auth is not None:
        out["auth"] = copy.deepcopy(auth)
    if access is not None:
        out["behaviorlens"] = {"access": copy.deepcopy(access)}
    return out


def policy(**lists: Any) -> AccessPolicy:
    found = access_policy(secrets(access=lists or LISTS))
    assert found is not None
    return found


def refused(config: dict[str, Any]) -> str:
    with pytest.raises(AccessConfigError) as info:
        access_policy(config)
    return str(info.value)


# -- sign-in off ---------------------------------------------------------------------------------
@pytest.mark.parametrize("config", [{}, {"db": {"password": "x"}}, {"behaviorlens": {}}])
def test_without_auth_and_access_lists_sign_in_is_off(config: dict[str, Any]) -> None:
    assert access_policy(config) is None


# -- roles ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("email", "role"),
    [
        ("alice@example.org", ANALYST),  # listed as an analyst, and of a viewers' domain: the analyst wins
        ("ALICE@EXAMPLE.ORG", ANALYST),  # case does not matter, on either side
        ("  alice@example.org ", ANALYST),
        ("rob@research.example.org", ANALYST),  # the analysts' domain
        ("bob@example.org", VIEWER),  # the viewers' domain
        ("Vic@Partner.test", VIEWER),  # an exact viewer address
        ("wendy@partner.test", None),  # vic's domain is not listed, only vic
        ("eve@sub.example.org", None),  # a domain entry is that domain only, not its subdomains
        ("eve@example.org.evil.test", None),
        ("example.org", None),
        ("", None),
        (None, None),
    ],
)
def test_the_role_of_an_email(email: str | None, role: str | None) -> None:
    assert policy().role_of(email) == role


def test_someone_on_both_lists_is_an_analyst() -> None:
    both = policy(analysts=["kim@x.org"], viewers=["kim@x.org", "@x.org"])
    assert both.role_of("kim@x.org") == ANALYST
    assert both.role_of("lee@x.org") == VIEWER


def test_one_list_is_enough() -> None:
    assert policy(viewers=["@x.org"]).role_of("a@x.org") == VIEWER
    assert policy(analysts=["a@x.org"]).role_of("b@x.org") is None


@pytest.mark.parametrize("claim", [False, "false", "FALSE"])
def test_an_address_the_provider_has_not_verified_gets_no_role(claim: object) -> None:
    assert not is_verified(claim)
    assert policy().role_of("alice@example.org", claim) is None


@pytest.mark.parametrize("claim", [True, "true", None])
def test_a_verified_or_unqualified_address_gets_its_role(claim: object) -> None:
    assert is_verified(claim)
    assert policy().role_of("alice@example.org", claim) == ANALYST


# -- providers -----------------------------------------------------------------------------------
def test_auth_holding_the_client_settings_is_the_default_provider() -> None:
    assert policy().providers == (DEFAULT_PROVIDER,)


def test_named_provider_tables_are_the_providers() -> None:
    named = {k: AUTH[k] for k in ("redirect_uri", "cookie_secret")}
    named["client_kwargs"] = {"prompt": "login"}  # a table inside [auth] that is not a provider
    named["okta"] = {k: AUTH[k] for k in ("client_id", "client_secret", "server_metadata_url")}
    named["google"] = dict(named["okta"])
    found = access_policy(secrets(auth=named))
    assert found is not None and found.providers == ("okta", "google")


# -- closed configurations -----------------------------------------------------------------------
def test_auth_without_access_lists_lets_nobody_in_and_says_what_to_add() -> None:
    message = refused(secrets(access=None))
    assert "nobody is let in" in message
    assert "[behaviorlens.access]" in message and "analysts = [...]" in message and "viewers = [...]" in message


@pytest.mark.parametrize("lists", [{}, {"analysts": [], "viewers": []}])
def test_empty_access_lists_let_nobody_in(lists: dict[str, Any]) -> None:
    assert "lists nobody" in refused(secrets(access=lists))


def test_access_lists_without_auth_are_refused() -> None:
    message = refused(secrets(auth=None))
    assert "no [auth] table" in message and "redirect_uri" in message


@pytest.mark.parametrize(
    ("missing", "named"),
    [("redirect_uri", "lacks redirect_uri"), ("cookie_secret", "lacks cookie_secret"), ("client_id", "client_id")],
)
def test_auth_lacking_a_key_is_refused_by_name(missing: str, named: str) -> None:
    auth = {k: v for k, v in AUTH.items() if k != missing}
    assert named in refused(secrets(auth=auth))


def test_auth_without_any_provider_is_refused() -> None:
    auth = {k: AUTH[k] for k in ("redirect_uri", "cookie_secret")}
    assert "names no OpenID Connect provider" in refused(secrets(auth=auth))


def test_a_named_provider_lacking_a_key_is_refused_by_name() -> None:
    auth = {k: AUTH[k] for k in ("redirect_uri", "cookie_secret")}
    auth["okta"] = {"client_id": "x", "client_secret": "y"}
    assert refused(secrets(auth=auth)) == "[auth.okta] in secrets.toml lacks server_metadata_url: nobody can sign in"


def test_a_redirect_uri_off_the_callback_route_is_refused() -> None:
    message = refused(secrets(auth={**AUTH, "redirect_uri": "https://behaviorlens.example.org/"}))
    assert "redirect_uri is 'https://behaviorlens.example.org/'" in message and "/oauth2callback" in message


# -- malformed lists: which key, which value, what was expected -------------------------------------
@pytest.mark.parametrize(
    ("lists", "expected"),
    [
        (
            {"analysts": "alice@x.org"},
            "[behaviorlens.access] analysts must be a list of e-mail addresses and @domains such as "
            '["alice@example.org", "@example.org"], not the text \'alice@x.org\'',
        ),
        (
            {"viewers": ["a@x.org", "alice"]},
            "[behaviorlens.access] viewers[1] is the text 'alice': expected an e-mail address (alice@example.org) "
            "or a domain starting with @ (@example.org)",
        ),
        ({"viewers": ["x.org"]}, "viewers[0] is the text 'x.org'"),
        ({"viewers": ["@"]}, "viewers[0] is the text '@'"),
        ({"viewers": ["a@b@x.org"]}, "viewers[0] is the text 'a@b@x.org'"),
        ({"viewers": ["a b@x.org"]}, "viewers[0] is the text 'a b@x.org'"),
        ({"analysts": [7]}, "analysts[0] is the number 7"),
        ({"analysts": [["a@x.org"]]}, "analysts[0] is the list ['a@x.org']"),
        ({"analysts": ["*@x.org"]}, 'no wildcards: "@example.org" is every address of that domain'),
        ({"analyst": ["a@x.org"]}, "[behaviorlens.access] has an unknown key 'analyst': expected only 'analysts'"),
    ],
)
def test_a_malformed_list_is_refused_naming_key_value_and_expectation(lists: dict[str, Any], expected: str) -> None:
    assert expected in refused(secrets(access=lists))


def test_a_malformed_table_is_refused() -> None:
    assert refused({"auth": AUTH, "behaviorlens": {"access": ["a@x.org"]}}) == (
        "behaviorlens.access in secrets.toml must be a table ([behaviorlens.access]), not the list ['a@x.org']"
    )
    assert "auth in secrets.toml must be a table" in refused({"auth": "on", "behaviorlens": {"access": LISTS}})


def test_a_configuration_error_is_one_of_the_projects_errors() -> None:
    assert issubclass(AccessConfigError, BehaviorLensError)

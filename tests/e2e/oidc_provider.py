"""A small OpenID Connect provider on 127.0.0.1 for the sign-in browser test: one client, a few test users.

It serves what ``st.login`` (Authlib) uses: discovery (``/.well-known/openid-configuration``), ``/authorize``
(a page with one button per test user; choosing one redirects back with a code, the ``state`` unchanged),
``/token`` (the code, the client secret and the PKCE verifier for an RS256-signed ID token carrying the
``nonce``, and an access token), ``/jwks`` (the public key) and ``/userinfo``. Codes are single-use and
bound to the client, the redirect URI and the PKCE challenge; an unregistered redirect URI is refused with an
error page, never redirected to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

CODE_TTL_S = 60
TOKEN_TTL_S = 600
AUTHORIZE_KEYS = ("response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge")


@dataclass
class Provider:
    """The provider's state: its client, its users (e-mail -> name), the redirect URIs it accepts, codes and
    tokens handed out, and every request path it answered (``seen``), for a failing test to show."""

    client_id: str
    client_secret: str
    users: dict[str, str]
    redirect_uris: set[str] = field(default_factory=set)
    issuer: str = ""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"}, True, True))
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> e-mail
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "email", "email_verified", "name"],
        }

    def claims(self, email: str) -> dict[str, Any]:
        subject = hashlib.sha256(email.encode()).hexdigest()[:16]
        return {"sub": subject, "email": email, "email_verified": True, "name": self.users[email]}

    def authorize_error(self, params: dict[str, str]) -> str | None:
        """Why an authorization request is refused, or None."""
        if params.get("client_id") != self.client_id:
            return f"unknown client_id {params.get('client_id')!r}"
        if params.get("redirect_uri") not in self.redirect_uris:
            return f"redirect_uri {params.get('redirect_uri')!r} is not registered"
        if params.get("response_type") != "code":
            return "response_type must be code"
        if "openid" not in params.get("scope", "").split():
            return "scope must include openid"
        return None

    def issue_code(self, params: dict[str, str], email: str) -> str:
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = {**params, "email": email, "expires": time.time() + CODE_TTL_S}
        return code

    def exchange(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, dict[str, Any]]:
        """The token endpoint: (status, JSON body)."""
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        if client_id != self.client_id or not hmac.compare_digest(secret, self.client_secret):
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self.lock:
            grant = self.codes.pop(form.get("code", ""), None)  # single use
        if grant is None or grant["expires"] < time.time() or grant["client_id"] != client_id:
            return 400, {"error": "invalid_grant", "error_description": "unknown, used or expired code"}
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs"}
        if grant.get("code_challenge") and s256(form.get("code_verifier", "")) != grant["code_challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verifier does not match"}
        now = int(time.time())
        id_claims = {"iss": self.issuer, "aud": client_id, "iat": now, "exp": now + TOKEN_TTL_S}
        id_claims.update(self.claims(grant["email"]))
        if grant.get("nonce"):
            id_claims["nonce"] = grant["nonce"]
        access = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[access] = grant["email"]
        id_token = jwt.encode({"alg": "RS256", "kid": self.key.kid}, id_claims, self.key)
        body = {"access_token": access, "token_type": "Bearer", "expires_in": TOKEN_TTL_S, "id_token": id_token}
        return 200, {**body, "scope": grant.get("scope", "openid")}


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a verifier."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class Handler(BaseHTTPRequestHandler):
    server: ProviderServer

    def log_message(self, format: str, *args: Any) -> None:  # the test reads provider.seen instead
        return

    def do_GET(self) -> None:
        provider, url = self.server.provider, urlsplit(self.path)
        provider.seen.append(f"GET {url.path}")
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/.well-known/openid-configuration":
            self.json(200, provider.discovery())
        elif url.path == "/jwks":
            self.json(200, {"keys": [provider.key.as_dict(private=False)]})
        elif url.path == "/authorize":
            self.login_page(params)
        elif url.path == "/userinfo":
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            email = provider.tokens.get(token) if scheme == "Bearer" else None
            if email is None:
                self.json(401, {"error": "invalid_token"})
            else:
                self.json(200, provider.claims(email))
        else:
            self.json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        provider, url = self.server.provider, urlsplit(self.path)
        provider.seen.append(f"POST {url.path}")
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if url.path == "/authorize":
            error = provider.authorize_error(form)
            if error or form.get("email") not in provider.users:
                self.page(400, f"Refused: {error or 'unknown user'}")
                return
            code = provider.issue_code({k: form[k] for k in AUTHORIZE_KEYS if k in form}, form["email"])
            query = urlencode({"code": code, **({"state": form["state"]} if "state" in form else {})})
            self.send_response(302)
            self.send_header("Location", f"{form['redirect_uri']}?{query}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/token":
            self.json(*provider.exchange(form, self.basic_auth()))
        else:
            self.json(404, {"error": "not_found"})

    def basic_auth(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        return client_id, secret

    def login_page(self, params: dict[str, str]) -> None:
        """One form per test user, carrying the authorization request as hidden fields."""
        error = self.server.provider.authorize_error(params)
        if error:
            self.page(400, f"Refused: {error}")
            return
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(params[k])}">' for k in AUTHORIZE_KEYS if k in params
        )
        forms = "".join(
            f'<form method="post" action="/authorize">{hidden}'
            f'<button name="email" value="{html.escape(email)}">Sign in as {html.escape(email)}</button></form>'
            for email in self.server.provider.users
        )
        self.page(200, f"<h1>Test identity provider</h1>{forms}")

    def page(self, status: int, body: str) -> None:
        data = f"<!doctype html><html><body>{body}</body></html>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ProviderServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, provider: Provider) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.provider = provider


@contextmanager
def oidc_provider(client_id: str, client_secret: str, users: dict[str, str]) -> Iterator[Provider]:
    """A provider serving on 127.0.0.1 and a free port (its ``issuer`` URL) until the block ends."""
    provider = Provider(client_id, client_secret, users)
    server = ProviderServer(provider)
    provider.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="oidc-provider", daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

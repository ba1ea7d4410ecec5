"""The viewer's guards: read-only methods, the access token, and defensive headers.

Without a token only requests addressed to a loopback name (`127.0.0.1`, `[::1]`,
`localhost`) are answered, which defeats DNS rebinding.

A pure ASGI middleware (no dependency on the routes): every response carries a strict
Content-Security-Policy (no script may run at all: the viewer has none), and with a token
configured a request must present it in the `Authorization: Bearer` or `X-Sqlsessions-Token`
header, or as `?token=` once, which sets an HttpOnly cookie and redirects to the URL
without it (so the token does not linger in the address bar or history).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_COOKIE = "sqlsessions_token"
TOKEN_HEADER = "x-sqlsessions-token"
READ_METHODS = frozenset({"GET", "HEAD"})
SECURITY_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self'; script-src 'none'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
)


def is_loopback(host: str) -> bool:
    """Whether binding to `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A random URL-safe access token."""
    return secrets.token_urlsafe(24)


class ViewerGuard:
    """Refuses writes (405), enforces the token when one is set, adds security headers."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in READ_METHODS:
            await _respond(
                send,
                405,
                b"Method not allowed: this viewer is read-only.\n",
                [(b"allow", b"GET, HEAD")],
            )
            return
        if self.token is None and not is_loopback(_host_name(scope)):
            # No token means loopback only: a page on another site that rebinds its own
            # name to 127.0.0.1 (DNS rebinding) still sends that name, and is refused.
            await _respond(
                send,
                403,
                b"Forbidden: without a token this viewer answers only to a loopback address "
                b"(start it with --token to serve other names).\n",
            )
            return
        if self.token is not None:
            query = parse_qsl(
                scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
            )
            given = dict(query).get("token")
            if given is not None and self._matches(given):
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
                cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                await _respond(
                    send,
                    303,
                    b"",
                    [(b"location", location.encode()), (b"set-cookie", cookie.encode())],
                )
                return
            if not self._authorized(scope):
                await _respond(
                    send,
                    401,
                    b"Unauthorized: this viewer needs its access token "
                    b"(open the URL printed by `sqlsessions ui`).\n",
                )
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + list(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _matches(self, given: str) -> bool:
        assert self.token is not None
        return secrets.compare_digest(given.encode(), self.token.encode())

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            text = value.decode("latin-1")
            if name == b"authorization" and text.lower().startswith("bearer "):
                if self._matches(text[7:].strip()):
                    return True
            elif name == TOKEN_HEADER.encode() and self._matches(text.strip()):
                return True
            elif name == b"cookie":
                try:
                    morsel = SimpleCookie(text).get(TOKEN_COOKIE)
                except CookieError:
                    continue
                if morsel is not None and self._matches(morsel.value):
                    return True
        return False


def _host_name(scope: Scope) -> str:
    """The host name the client asked for (the Host header without its port)."""
    for name, value in scope.get("headers", []):
        if name == b"host":
            host: str = value.decode("latin-1").strip()
            if host.startswith("["):
                return host[: host.find("]") + 1]
            return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return ""


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

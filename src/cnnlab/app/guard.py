"""What stands between the network and the app: the Host header (DNS rebinding), the token (any host
but the loopback), and the body size (413 over 10 MB). One ASGI middleware, so every route, the page and
its static files alike are behind it; answers are one-line JSON ``{"error": ...}``.

DNS rebinding: a page on an attacker's domain that re-resolves to 127.0.0.1 can make the browser send
requests to the app, but they carry the attacker's name in the Host header -- refused here.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

__all__ = ["Guard", "Policy", "MAX_BODY", "TOKEN_HEADER", "TOKEN_COOKIE", "is_loopback", "new_token"]

MAX_BODY = 10 * 1024 * 1024  # bytes a request body may have
TOKEN_HEADER = "x-cnnlab-token"
TOKEN_COOKIE = "cnnlab_token"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Policy:
    """Which Host headers are the app's own, and the token, if one is needed."""

    host: str
    port: int
    token: str | None = None
    hosts: set[str] = field(init=False, default_factory=set)  # derived from host and port

    @property
    def any_host(self) -> bool:
        """Bound to every interface (0.0.0.0, ::): a browser names the machine as it knows it, so the token,
        always needed off the loopback, is the guard; the Host header is not checked."""
        return self.host in ("0.0.0.0", "::", "[::]")

    def allows(self, host_header: str) -> bool:
        return self.any_host or host_header.lower() in self.hosts

    def __post_init__(self) -> None:
        names = {self.host} | ({"localhost", "127.0.0.1", "[::1]"} if is_loopback(self.host) else set())
        names |= {f"[{self.host}]"} if ":" in self.host and not self.host.startswith("[") else set()
        self.hosts = {h.lower() for h in names} | {f"{h}:{self.port}".lower() for h in names}


async def _answer(send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class Guard:
    """ASGI middleware: Host check, token check, body limit (read in full, then handed on)."""

    def __init__(self, app, policy: Policy, max_body: int = MAX_BODY):
        self.app, self.policy, self.max_body = app, policy, max_body

    def _token_given(self, scope, headers: dict[str, str]) -> tuple[str | None, bool]:
        """(the token the request carries, whether it came in the URL)."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return query["token"][0], True
        if headers.get(TOKEN_HEADER):
            return headers[TOKEN_HEADER], False
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 -- a malformed cookie header is no token
            return None, False
        return (cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else None), False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        if not self.policy.allows(headers.get("host", "")):
            return await _answer(send, 400, f"the Host header {headers.get('host', '')!r} is not this server's; "
                                            f"open http://{self.policy.host}:{self.policy.port}/")
        extra: list = []
        if self.policy.token is not None:
            given, in_url = self._token_given(scope, headers)
            if given is None or not secrets.compare_digest(given.encode(), self.policy.token.encode()):
                return await _answer(send, 403, "this server needs its token: open the URL cnnlab explore printed "
                                                "(with ?token=...), or send the X-Cnnlab-Token header")
            if in_url:
                extra = [(b"set-cookie", f"{TOKEN_COOKIE}={given}; HttpOnly; SameSite=Strict; Path=/".encode())]
        length = headers.get("content-length")
        too_long = length is not None and (not length.isdigit() or int(length) > self.max_body)
        body = None if too_long else await self._body(receive)  # a declared length over the limit: nothing read
        if body is None:
            return await _answer(send, 413, f"the request body is over {self.max_body // 2**20} MB; send a "
                                            f"smaller image")
        return await self.app(scope, _replay(body, receive), _with_headers(send, extra))

    async def _body(self, receive) -> bytes | None:
        """The whole body, or None once it passes the limit (the rest is not read)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive):
    """The body read, handed on as one message; after it, the connection's own messages (a disconnect)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


def _with_headers(send, extra: list):
    if not extra:
        return send

    async def wrapped(message):
        if message["type"] == "http.response.start":
            message = dict(message, headers=[*message.get("headers", []), *extra])
        await send(message)
    return wrapped

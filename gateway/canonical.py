"""One canonical request path, computed once at the edge, for authorization and routing alike.

Authorization once matched the still-encoded path while routing decoded it, so ``/api/v1/%6beys``
was judged as an unknown path (allowed) and served as ``/api/v1/keys``. Now a path is accepted only
if it has exactly one meaning; the middleware below rewrites the request to that meaning before
anything else looks at it, and everything inside (authentication, permissions, object-level checks,
the router and the proxy's upstream path) reads the same value.

Policy (refusals are 400 problem+json, code ``non_canonical_path``, naming the field ``path``):

- the raw path starts with ``/`` and holds printable ASCII only;
- no empty segment (``//``); one trailing ``/`` is dropped, so ``/api/v1/customers/`` is ``/api/v1/customers``;
- no dot segment (``.`` or ``..``);
- ``%XX`` is two hex digits and never encodes an unreserved character (``A-Z a-z 0-9 - . _ ~``):
  those have one spelling only, so ``%6b`` for ``k`` (or ``%2e`` for ``.``) is refused, never decoded;
- decoded, a segment holds no ``/``, ``\\``, ``%`` (double encoding such as ``%2565``), ``;`` (path
  parameters), control character (NUL included) or non-ASCII byte (overlong or invalid UTF-8 included).

A well-formed path in another case (``/API/v1/keys``) is a different path: it matches no route and
answers 404. The upstream request carries the canonical path re-encoded one way (``encoded``).
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass, field
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from servicekit.problems import problem_response

UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_HEX = frozenset(string.hexdigits)
# Decoded characters no segment may hold (see the module docstring).
_FORBIDDEN = frozenset("/\\%;") | frozenset(chr(c) for c in range(0x20)) | {"\x7f"}
# Left as they are when re-encoding: unreserved characters and the sub-delimiters a path may carry raw.
_SAFE = "-._~!$&'()*+,=:@"
STATE_KEY = "canonical_path"
# Paths up to this long are canonicalized once per process (a bounded LRU of the recent ones): a client
# sends the same few paths again and again, and the work showed in the gateway's profile per request.
_MEMO_MAX_LENGTH = 256


class NonCanonicalPath(ValueError):
    """The path has no single meaning; ``reason`` says why (safe to show: it names no input)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CanonicalPath:
    segments: tuple[str, ...]  # decoded; empty for "/"
    # Both spellings computed once (each request reads them several times):
    path: str = field(init=False)  # decoded, as ASGI's ``scope["path"]``
    encoded: str = field(init=False)  # percent-encoded one way, as ASGI's ``raw_path`` and as sent upstream

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", "/" + "/".join(self.segments))
        object.__setattr__(self, "encoded", "/" + "/".join(quote(s, safe=_SAFE) for s in self.segments))


def canonicalize(raw: str) -> CanonicalPath:
    """The canonical form of a raw request path (no query string); raises NonCanonicalPath."""
    return _canonicalize_memo(raw) if len(raw) <= _MEMO_MAX_LENGTH else _canonicalize(raw)


@functools.lru_cache(maxsize=1024)
def _canonicalize_memo(raw: str) -> CanonicalPath:
    return _canonicalize(raw)  # a refusal raises, and is not remembered


def _canonicalize(raw: str) -> CanonicalPath:
    if not raw.startswith("/"):
        raise NonCanonicalPath("The path must start with '/'.")
    if any(not ("\x21" <= ch <= "\x7e") for ch in raw):
        raise NonCanonicalPath("The path may hold printable ASCII characters only; percent-encode the rest.")
    body = raw[1:]
    if body.endswith("/"):
        body = body[:-1]
    if not body:
        return CanonicalPath(())
    return CanonicalPath(tuple(_segment(s) for s in body.split("/")))


def _segment(raw: str) -> str:
    if not raw:
        raise NonCanonicalPath("The path has an empty segment ('//').")
    if raw in (".", ".."):
        raise NonCanonicalPath("The path has a dot segment ('.' or '..').")
    if ";" in raw:
        raise NonCanonicalPath("Path parameters (';') are not accepted.")
    decoded: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\":
            raise NonCanonicalPath("The path has a backslash; no path segment may hold one.")
        if ch != "%":
            decoded.append(ch)
            i += 1
            continue
        pair = raw[i + 1 : i + 3]
        if len(pair) != 2 or not set(pair) <= _HEX:
            raise NonCanonicalPath("The path has a malformed percent-escape.")
        char = chr(int(pair, 16))
        if char in UNRESERVED:
            raise NonCanonicalPath(f"'%{pair}' encodes an unreserved character; send it as it is.")
        if char in _FORBIDDEN or ord(char) > 0x7E:
            raise NonCanonicalPath(
                "The path encodes a character no path segment may hold (slash, backslash, percent, ';', "
                "a control character or non-ASCII)."
            )
        decoded.append(char)
        i += 3
    return "".join(decoded)


def request_path(scope: Scope) -> CanonicalPath:
    """The request's canonical path, computed once per request; raises NonCanonicalPath."""
    state = scope.setdefault("state", {})
    cached: CanonicalPath | None = state.get(STATE_KEY)
    if cached is None:
        raw: bytes | None = scope.get("raw_path")
        # Without raw_path (some test servers) the decoded path is all there is: re-encode it.
        text = raw.split(b"?", 1)[0].decode("latin-1") if raw else quote(scope["path"], safe="/" + _SAFE)
        cached = state[STATE_KEY] = canonicalize(text)
    return cached


class CanonicalPathMiddleware:
    """Pure ASGI, outside authentication: refuse a non-canonical path, else rewrite the scope to the canonical one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            canonical = request_path(scope)
        except NonCanonicalPath as exc:
            response = problem_response(
                400,
                "Bad request",
                exc.reason,
                code="non_canonical_path",
                errors=[{"field": "path", "message": exc.reason}],
            )
            await response(scope, receive, send)
            return
        # From here on the router, authorization and the proxy all see this one path.
        scope["path"] = canonical.path
        scope["raw_path"] = canonical.encoded.encode("ascii")
        await self.app(scope, receive, send)

"""Finding 1 of issue 20 on the real platform: authorization judges the path that routing serves.

A generated sweep spells every protected route (gateway.routes.PERMISSIONS) in many ways -- each
character percent-encoded in turn, double encoding, dot segments, duplicate slashes, case changes,
trailing characters -- and sends each spelling as every role. Each answer must be the canonical
route's decision (401 / 403 / allowed) or a refusal (400 / 404): never allowed where the canonical
path is denied. Ids are ones that exist nowhere, and requests carry no body, so nothing is written.
Plus the exact exploits: an agent minting an admin API key, and an erasure judged as a read.
"""

from __future__ import annotations

import asyncio
import string
import uuid
from collections.abc import Iterator

import httpx
import pytest

from gateway.auth import make_principal
from gateway.routes import API_PREFIX, PERMISSIONS, PUBLIC, Permission
from gateway.settings import ROLES
from tests.e2e.helpers import create_customer
from tests.platform import GATEWAY, token

pytestmark = pytest.mark.e2e

ANONYMOUS = "anonymous"
REFUSED = frozenset({400, 404})
CONCURRENCY = 16
MISSING_ID = "x1"


def raw_request(client: httpx.AsyncClient, method: str, raw_path: str, **kwargs: object) -> httpx.Request:
    """A request whose path goes on the wire exactly as written (httpx would remove dot segments)."""
    request = client.build_request(method, "/", **kwargs)  # type: ignore[arg-type]
    request.url._uri_reference = request.url._uri_reference._replace(path=raw_path)
    return request


def _enc(char: str, upper: bool) -> str:
    return f"%{ord(char):02X}" if upper else f"%{ord(char):02x}"


def spellings(path: str) -> Iterator[str]:
    """Other spellings of ``path`` (an /api/v1/... path), each differing from it in one way."""
    segments = path.split("/")[1:]
    # Every character percent-encoded in turn (hex case alternating), and double-encoded.
    for i, char in enumerate(path):
        yield path[:i] + _enc(char, i % 2 == 0) + path[i + 1 :]
        if char != "/":
            yield path[:i] + "%25" + _enc(char, i % 2 == 1)[1:] + path[i + 1 :]
    # Dot segments, plain and encoded, before every segment and at the end.
    for k in range(1, len(segments) + 1):
        head, tail = "/".join(segments[:k]), "/".join(segments[k:])
        for dots in (".", "..", "%2e", "%2e%2e", ".%2E"):
            middle = f"{dots}/{segments[k - 1]}" if dots.replace("%2e", ".").replace("%2E", ".") == ".." else dots
            yield "/" + head + "/" + middle + ("/" + tail if tail else "")
    # Duplicate slashes at every slash, and a doubled leading one.
    for i, char in enumerate(path):
        if char == "/":
            yield path[:i] + "/" + path[i:]
    # Case: the whole path, and each segment, in upper and in title case.
    yield path.upper()
    for k, segment in enumerate(segments):
        for variant in (segment.upper(), segment[:1].upper() + segment[1:]):
            if variant != segment:
                yield "/" + "/".join([*segments[:k], variant, *segments[k + 1 :]])
    # Trailing characters.
    for trailer in ("/", ";x", ";", "%00", "%20", "%2f", "%2e", "/.", "/..", "%5c", "%3b", "%09", "~", "%7e"):
        yield path + trailer


def example(rule: Permission) -> str:
    return API_PREFIX + "/" + "/".join(MISSING_ID if p == "*" else p for p in rule.pattern)


def method_of(rule: Permission) -> str:
    # One method per rule: a read where the rule covers reads, else the first write (no body is sent).
    for method in ("GET", "POST", "DELETE", "PATCH", "PUT"):
        if method in rule.methods:
            return method
    raise AssertionError(rule)


def decision(status: int) -> str:
    if status in (401, 403):
        return str(status)
    if status in REFUSED:
        return "refused"
    if status == 429:
        return "throttled"
    return "allowed"


class Sweep:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.limit = asyncio.Semaphore(CONCURRENCY)
        self.headers: dict[tuple[str, int], dict[str, str]] = {}

    def auth(self, role: str, rule_index: int) -> dict[str, str]:
        # One subject per role and rule, so a role's rate limit is never what answers.
        key = (role, rule_index)
        if key not in self.headers:
            self.headers[key] = (
                {} if role == ANONYMOUS else {"Authorization": f"Bearer {token(role, f'sweep-{role}-{rule_index}')}"}
            )
        return self.headers[key]

    async def status(self, method: str, raw_path: str, headers: dict[str, str]) -> int:
        async with self.limit:
            for _ in range(20):
                response = await self._send(raw_request(self.client, method, raw_path, headers=headers))
                if response.status_code != 429:
                    return response.status_code
                await asyncio.sleep(min(2.0, float(response.headers.get("retry-after", "1"))))
            return 429

    async def _send(self, request: httpx.Request) -> httpx.Response:
        # A pooled keep-alive connection the server closes just as a request goes out ends without an
        # answer. Sent again on a new connection; a spelling the gateway really drops fails every time.
        for attempt in range(3):
            try:
                return await self.client.send(request)
            except httpx.RemoteProtocolError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def test_spellings_differ_from_the_route_and_cover_every_character() -> None:
    path = "/api/v1/keys"
    spelled = set(spellings(path))
    assert path not in spelled
    assert "/api/v1/%6beys" in spelled or "/api/v1/%6Beys" in spelled
    assert "/%61pi/v1/keys" in spelled
    assert "/api/v1/ke%2579s" in spelled or "/api/v1/ke%2579S" in spelled  # double encoding of y
    assert {"/api/v1/keys/", "/api/v1/keys;x", "/api/v1/keys%00", "/api/v1/keys%20", "/API/V1/KEYS"} <= spelled
    assert "/api//v1/keys" in spelled and "/api/v1/keys/../keys" in spelled


async def test_every_spelling_of_every_route_gets_the_canonical_decision_or_a_refusal(
    gateway: httpx.AsyncClient,
) -> None:
    roles = (*ROLES, ANONYMOUS)
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as client:
        sweep = Sweep(client)
        canonical: dict[tuple[int, str], int] = {}

        async def judge_canonical(index: int, rule: Permission, role: str) -> None:
            canonical[index, role] = await sweep.status(method_of(rule), example(rule), sweep.auth(role, index))

        await asyncio.gather(*(judge_canonical(i, rule, role) for i, rule in enumerate(PERMISSIONS) for role in roles))
        for (index, role), status in canonical.items():
            rule = PERMISSIONS[index]
            assert status != 429, (role, rule.pattern)
            if rule in PUBLIC:
                # Answered without a login (the one-time token in the path is the credential): whoever
                # calls reaches the service, which refuses an unknown token with 404.
                assert status not in (401, 403), (role, rule.pattern, status)
            elif role == ANONYMOUS:
                assert status == 401, (role, rule.pattern, status)
            elif not make_principal("x", role, "user").can(rule.permission):
                assert status == 403, (role, method_of(rule), example(rule), status)

        failures: list[tuple[str, str, str, int, int]] = []
        count = 0

        async def judge(index: int, rule: Permission, role: str, spelled: str) -> None:
            status = await sweep.status(method_of(rule), spelled, sweep.auth(role, index))
            expected = canonical[index, role]
            if status in REFUSED or status == 429 or decision(status) == decision(expected):
                return
            # Another path (other case, a trailing character): its own default-deny is no escalation.
            if status in (401, 403) and spelled.rstrip("/") != example(rule):
                return
            failures.append((role, method_of(rule), spelled, status, expected))

        jobs = []
        for index, rule in enumerate(PERMISSIONS):
            for spelled in dict.fromkeys(spellings(example(rule))):
                for role in roles:
                    jobs.append(judge(index, rule, role, spelled))
        count = len(jobs)
        await asyncio.gather(*jobs)
    assert count > 10_000
    assert not failures, f"{len(failures)} of {count} spellings judged unlike their route: {failures[:20]}"


async def test_an_agent_cannot_create_list_or_revoke_keys_through_an_encoded_path(gateway: httpx.AsyncClient) -> None:
    before = (await gateway.get("/api/v1/keys", params={"include_revoked": True, "limit": 200})).json()
    victim = (await gateway.post("/api/v1/keys", json={"name": "victim", "role": "integration"})).json()
    agent = {"Authorization": f"Bearer {token('agent', 'agent-exploit')}"}
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=10, headers=agent) as client:
        for raw in ("/api/v1/%6beys", "/%61pi/v1/keys", "/api/v1/%6Beys", "/api%2fv1/keys", "/api/v1/x/../keys"):
            created = await client.send(raw_request(client, "POST", raw, json={"name": "pwn", "role": "admin"}))
            assert created.status_code in REFUSED, (raw, created.status_code, created.text)
            assert "crmk_" not in created.text
            listed = await client.send(raw_request(client, "GET", raw))
            assert listed.status_code in REFUSED, raw
            revoked = await client.send(raw_request(client, "DELETE", f"{raw}/{victim['id']}"))
            assert revoked.status_code in REFUSED, raw
        assert (await client.post("/api/v1/keys", json={"name": "pwn", "role": "admin"})).status_code == 403
    after = (await gateway.get("/api/v1/keys", params={"include_revoked": True, "limit": 200})).json()
    assert after["total"] == before["total"] + 1  # only the victim, made by the admin
    assert (await gateway.get(f"/api/v1/keys/{victim['id']}")).json()["revoked_at"] is None


async def test_an_encoded_erasure_by_an_agent_is_refused_not_judged_as_a_read(gateway: httpx.AsyncClient) -> None:
    sub = f"agent-{uuid.uuid4().hex[:8]}"
    customer = await create_customer(gateway, owner=sub)
    agent = {"Authorization": f"Bearer {token('agent', sub)}"}
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=10, headers=agent) as client:
        for raw in (f"/api/v1/customers/{customer['id']}/%65rasure", f"/api/v1/customers/{customer['id']}/%45rasure"):
            for method in ("POST", "GET", "DELETE"):
                response = await client.send(raw_request(client, method, raw))
                assert response.status_code == 400, (method, raw, response.status_code)
        # Spelled plainly, reading the erasure receipt is judged on its own permission: denied.
        assert (await client.get(f"/api/v1/customers/{customer['id']}/erasure")).status_code == 403
    current = (await gateway.get(f"/api/v1/customers/{customer['id']}")).json()
    assert current["erased_at"] is None


def test_route_literals_are_unreserved_so_one_spelling_each() -> None:
    # The policy refuses encoded unreserved characters; it only works if no route literal needs encoding.
    allowed = set(string.ascii_letters + string.digits + "-._~")
    for rule in PERMISSIONS:
        for part in rule.pattern:
            assert part == "*" or set(part) <= allowed, rule.pattern

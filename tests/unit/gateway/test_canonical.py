"""gateway.canonical: every path has one meaning, or it is refused; authorization and routing share it."""

import httpx
import pytest

from gateway.canonical import UNRESERVED, CanonicalPath, NonCanonicalPath, canonicalize
from gateway.routes import API_PREFIX, PERMISSIONS
from tests.unit.gateway.conftest import StartGateway
from tests.unit.gateway.fakes import PROBLEM, FakeService


def raw_request(client: httpx.AsyncClient, method: str, raw_path: str, **kwargs: object) -> httpx.Request:
    """A request whose path goes on the wire exactly as written (httpx would remove dot segments)."""
    request = client.build_request(method, "/", **kwargs)  # type: ignore[arg-type]
    request.url._uri_reference = request.url._uri_reference._replace(path=raw_path)
    return request


@pytest.mark.parametrize(
    ("raw", "path", "encoded"),
    [
        ("/", "/", "/"),
        ("/api/v1/customers", "/api/v1/customers", "/api/v1/customers"),
        ("/api/v1/customers/", "/api/v1/customers", "/api/v1/customers"),
        ("/api/v1/customers/a%20b", "/api/v1/customers/a b", "/api/v1/customers/a%20b"),
        ("/api/v1/customers/a%3ab", "/api/v1/customers/a:b", "/api/v1/customers/a:b"),
        ("/api/v1/customers/a%40b", "/api/v1/customers/a@b", "/api/v1/customers/a@b"),
        ("/api/v1/customers/a%3Fb%23c", "/api/v1/customers/a?b#c", "/api/v1/customers/a%3Fb%23c"),
        ("/API/v1/keys", "/API/v1/keys", "/API/v1/keys"),  # well-formed, just another path (404)
        ("/api/v1/c-1_x.y~z", "/api/v1/c-1_x.y~z", "/api/v1/c-1_x.y~z"),
    ],
)
def test_a_clean_path_has_one_canonical_form(raw: str, path: str, encoded: str) -> None:
    canonical = canonicalize(raw)
    assert (canonical.path, canonical.encoded) == (path, encoded)


@pytest.mark.parametrize(
    "raw",
    [
        "/api/v1/%6beys",  # an encoded unreserved letter
        "/api/v1/%6Beys",
        "/%61pi/v1/keys",
        "/api/v1/customers/c-1/%65rasure",
        "/api/v1/customers/%2e%2e/keys",  # encoded dot segment
        "/api/v1/customers/../keys",
        "/api/v1/./keys",
        "/api/v1/customers/a%2Fb",  # encoded slash
        "/api/v1/customers/a%2fb",
        "/api/v1/customers/a%5Cb",  # encoded backslash
        "/api/v1/customers/a\\b",
        "/api/v1/customers/a%00",  # NUL
        "/api/v1/customers/a%0a",
        "/api/v1/customers/a%7F",
        "/api/v1/k%2565ys",  # double encoding
        "/api/v1/customers/a%25",
        "/api/v1/keys;x",  # path parameters
        "/api/v1/keys%3Bx",
        "/api//v1/keys",  # duplicate slashes
        "//api/v1/keys",
        "/api/v1/keys//",
        "/api/v1/customers/%C0%AF",  # overlong UTF-8
        "/api/v1/customers/%C3%A9",  # non-ASCII
        "/api/v1/customers/%FF",  # invalid UTF-8
        "/api/v1/customers/\u00e9",
        "/api/v1/customers/a b",
        "/api/v1/customers/%zz",  # malformed escapes
        "/api/v1/customers/%4",
        "api/v1/keys",
        "*",
    ],
)
def test_a_path_without_one_meaning_is_refused(raw: str) -> None:
    with pytest.raises(NonCanonicalPath):
        canonicalize(raw)


def test_every_encoded_unreserved_character_is_refused() -> None:
    for char in UNRESERVED:
        for escape in (f"%{ord(char):02x}", f"%{ord(char):02X}"):
            with pytest.raises(NonCanonicalPath):
                canonicalize(f"/api/v1/customers/{escape}")


def test_the_canonical_form_is_a_fixed_point() -> None:
    for raw in ("/api/v1/customers/a%20b%3A%40%2C!", "/api/v1/customers/x'y(z)*+,=&$"):
        once = canonicalize(raw)
        assert canonicalize(once.encoded) == once
        assert isinstance(once, CanonicalPath)


async def test_an_agent_cannot_mint_an_admin_key_through_an_encoded_path(
    start_gateway: StartGateway,
) -> None:
    # The exploit of issue 20, finding 1: authorization saw an unknown path, routing served /keys.
    agent = await start_gateway(as_role="agent")
    for raw in ("/api/v1/%6beys", "/%61pi/v1/keys", "/api/v1/%6Beys/", "/api%2fv1/keys", "/api/v1/x/../keys"):
        response = await agent.send(raw_request(agent, "POST", raw, json={"name": "pwn", "role": "admin"}))
        assert response.status_code in (400, 404), (raw, response.status_code, response.text)
        assert response.headers["content-type"] == PROBLEM
        listed = await agent.send(raw_request(agent, "GET", raw))
        assert listed.status_code in (400, 404), raw
    # The canonical spelling is judged and denied.
    assert (await agent.post("/api/v1/keys", json={"name": "pwn", "role": "admin"})).status_code == 403


async def test_an_encoded_erasure_is_not_judged_as_a_read(
    start_gateway: StartGateway, fakes: dict[str, FakeService]
) -> None:
    agent = await start_gateway(as_role="agent")
    response = await agent.send(raw_request(agent, "POST", "/api/v1/customers/c-1/%65rasure"))
    assert response.status_code == 400
    assert not [seen for seen in fakes["customer"].seen if "erasure" in seen.path]


async def test_the_service_receives_the_canonical_path(
    start_gateway: StartGateway, fakes: dict[str, FakeService]
) -> None:
    admin = await start_gateway()
    response = await admin.send(raw_request(admin, "GET", "/api/v1/customers/a%20b%3a%40/"))
    assert response.status_code == 200
    assert fakes["customer"].seen[-1].path == "/customers/a b:@"


async def test_every_permission_rule_is_refused_when_spelled_with_an_encoded_letter(
    start_gateway: StartGateway, fakes: dict[str, FakeService]
) -> None:
    admin = await start_gateway()
    for rule in PERMISSIONS:
        literal = next(i for i, p in enumerate(rule.pattern) if p != "*")
        segments = ["x1" if p == "*" else p for p in rule.pattern]
        segments[literal] = f"%{ord(segments[literal][0]):02x}" + segments[literal][1:]
        raw = API_PREFIX + "/" + "/".join(segments)
        response = await admin.send(raw_request(admin, sorted(rule.methods)[0], raw))
        assert response.status_code == 400, raw
    assert all(not service.seen for service in fakes.values())

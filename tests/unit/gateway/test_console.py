"""The console's static files, security headers, development sign-in, and the owner-narrowed alert stream."""

from pathlib import Path

import jwt

from gateway.console import CSP
from gateway.settings import GatewaySettings
from gateway.sse_filter import OwnerStreamFilter
from servicekit.settings import PlatformSettings


def _dist(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text('<!doctype html><script type="module" src="/console/assets/app-abcdef12.js">')
    (dist / "assets" / "app-abcdef12.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("not for the web")
    return dist


async def test_console_files_carry_a_strict_csp_and_unknown_paths_fall_back_to_the_app(start_gateway, tmp_path):
    client = await start_gateway(as_role=None, console_dir=str(_dist(tmp_path)))
    page = await client.get("/console/customers/c-1")
    assert page.status_code == 200 and page.text.startswith("<!doctype html>")
    assert page.headers["content-security-policy"] == CSP
    assert "script-src 'self';" in CSP and "unsafe-inline" not in CSP and "frame-ancestors 'none'" in CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-cache"
    script = await client.get("/console/assets/app-abcdef12.js")
    assert script.status_code == 200 and "immutable" in script.headers["cache-control"]
    assert (await client.get("/console/assets/missing-abcdef12.js")).status_code == 404


async def test_no_file_outside_the_build_is_served(start_gateway, tmp_path):
    client = await start_gateway(as_role=None, console_dir=str(_dist(tmp_path)))
    for path in ("/console/../secret.txt", "/console/%2e%2e/secret.txt", "/console/assets/..%2f..%2fsecret.txt"):
        response = await client.get(path)
        assert "not for the web" not in response.text, path


async def test_development_sign_in_mints_a_short_lived_token_the_gateway_accepts(start_gateway, tmp_path):
    client = await start_gateway(as_role=None, console_dir=str(_dist(tmp_path)))
    config = (await client.get("/console/config.json")).json()
    assert config["dev_sign_in"] is True and config["oidc"] is None
    answer = await client.post("/console/dev-token", json={"sub": "anna", "role": "agent"})
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    token = answer.json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["role"]) == ("anna", "agent")
    assert claims["exp"] - claims["iat"] == GatewaySettings().console_dev_token_ttl_s <= 3600
    alerts = await client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {token}"})
    assert alerts.status_code == 200
    keys = await client.get("/api/v1/keys", headers={"Authorization": f"Bearer {token}"})
    assert keys.status_code == 403


async def test_development_sign_in_refuses_an_unknown_role_naming_the_field(start_gateway, tmp_path):
    client = await start_gateway(as_role=None, console_dir=str(_dist(tmp_path)))
    answer = await client.post("/console/dev-token", json={"sub": "anna", "role": "root"})
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert any("role" in e["field"] for e in answer.json()["errors"])


async def test_development_sign_in_does_not_exist_with_hs256_off(start_gateway, tmp_path):
    # Production mode refuses to start with the development secret at all; with HS256 off (an
    # identity provider's JWKS only) there is no development sign-in either.
    client = await start_gateway(
        as_role=None, console_dir=str(_dist(tmp_path)), jwt_secret="", jwks_url="https://idp.example/jwks"
    )
    assert (await client.post("/console/dev-token", json={"sub": "anna", "role": "admin"})).status_code == 404
    assert (await client.get("/console/config.json")).json()["dev_sign_in"] is False


def test_development_sign_in_is_off_in_production_mode():
    from gateway.console import dev_sign_in_enabled

    assert dev_sign_in_enabled(GatewaySettings())
    assert not dev_sign_in_enabled(GatewaySettings(platform=PlatformSettings(production=True)))


async def test_docs_load_swagger_ui_from_this_origin(start_gateway, tmp_path):
    client = await start_gateway(as_role=None, console_dir=str(_dist(tmp_path)))
    html = (await client.get("/docs")).text
    assert "/console/docs-assets/swagger-ui-bundle.js" in html and "cdn" not in html.lower()


def test_an_owner_scoped_stream_relays_only_its_owners_events_and_keepalives():
    mine = b'id: 1\nevent: alert.raised\ndata: {"alert_id": "a1", "customer_id": "c1", "owner": "anna"}\n\n'
    theirs = b'id: 2\nevent: alert.raised\ndata: {"alert_id": "a2", "customer_id": "c2", "owner": "ben"}\n\n'
    orphan = b'id: 3\nevent: alert.raised\ndata: {"alert_id": "a3", "customer_id": "c3", "owner": null}\n\n'
    keepalive = b": keepalive\n\n"
    later = mine.replace(b"id: 1", b"id: 4")
    stream = mine + theirs + keepalive + orphan + later
    relay = OwnerStreamFilter(frozenset({"anna"}))
    # Split anywhere: events arrive in arbitrary chunks.
    out = [frame for i in range(0, len(stream), 7) for frame in relay.feed(stream[i : i + 7])]
    # Each event names the customer whose current owner the relay checks before sending it.
    assert out == [(mine, "c1"), (keepalive, None), (later, "c1")]
    team = OwnerStreamFilter(frozenset({"anna", "ben"}))
    assert team.feed(theirs + b"data: not json\n\n" + b"data: [1]\n\n") == [(theirs, "c2")]


def test_the_csp_lets_the_console_reach_only_the_configured_identity_provider():
    from gateway.console import content_security_policy

    settings = GatewaySettings(console_oidc_issuer="https://login.example.com/realms/crm", console_oidc_client_id="c")
    policy = content_security_policy(settings)
    assert "connect-src 'self' https://login.example.com;" in policy
    assert content_security_policy(GatewaySettings()) == CSP


def test_production_mode_refuses_an_identity_provider_in_clear():
    from gateway.settings import production_problems
    from servicekit.auth import InternalAuthSettings

    settings = GatewaySettings(console_oidc_issuer="http://login.example.com")
    assert any("GATEWAY_CONSOLE_OIDC_ISSUER" in p for p in production_problems(settings, InternalAuthSettings()))

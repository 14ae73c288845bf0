"""Authentication at the edge: Bearer JWTs, API keys, 401 vs 403, and per-caller rate limits."""

import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from gateway.routes import PERMISSIONS, ROLE_PERMISSIONS, is_public
from gateway.settings import DEV_JWT_SECRET
from tests.unit.gateway.conftest import StartGateway, bearer
from tests.unit.gateway.fakes import PROBLEM, FakeService, Servers


def _token(secret: str = DEV_JWT_SECRET, algorithm: str = "HS256", headers: dict | None = None, **claims) -> str:
    now = int(time.time())
    body = {"sub": "alice", "role": "admin", "iss": "crm-local", "aud": "crm-api", "iat": now, "exp": now + 60}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, algorithm=algorithm, headers=headers)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _example_path(pattern: tuple[str, ...]) -> str:
    return "/api/v1/" + "/".join("x1" if p == "*" else p for p in pattern)


async def test_every_api_route_without_credentials_is_401_with_a_bearer_challenge(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(as_role=None)
    for rule in PERMISSIONS:
        for method in sorted(rule.methods - {"HEAD"}):
            if is_public(method, _example_path(rule.pattern)):
                continue  # survey links: test_survey_links_need_no_login_and_reach_nothing_else
            response = await gateway.request(method, _example_path(rule.pattern))
            assert response.status_code == 401, (method, rule.pattern)
            assert response.headers["www-authenticate"].startswith('Bearer realm="crm"')
            assert response.headers["content-type"] == PROBLEM
            assert response.headers["x-request-id"]


async def test_survey_links_need_no_login_and_reach_nothing_else(
    start_gateway: StartGateway, fakes: dict[str, FakeService]
) -> None:
    gateway = await start_gateway(as_role=None, rate_limits={"respondent": 1.0}, rate_burst_factor=2.0)
    for method in ("GET", "POST"):
        response = await gateway.request(method, "/api/v1/surveys/respond/some-token", json={"score": 9})
        assert response.status_code == 200, (method, response.text)  # forwarded to retention (a fake here)
    # the same source address again, at once: above the respondent's rate (per address, not per token)
    limited = await gateway.get("/api/v1/surveys/respond/another-token")
    assert limited.status_code == 429 and "retry-after" in limited.headers
    # nothing else is reachable without a login, not even the surveys below another path
    for path in ("/api/v1/surveys", "/api/v1/surveys/respond", "/api/v1/customers/x1/consent"):
        assert (await gateway.get(path)).status_code == 401, path
    assert (await gateway.delete("/api/v1/surveys/respond/some-token")).status_code == 401


async def test_health_metrics_and_docs_are_public(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(as_role=None)

    for path in ("/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs"):
        assert (await gateway.get(path)).status_code == 200, path


@pytest.mark.parametrize(
    "token",
    [
        _token(exp=int(time.time()) - 3600),
        _token(aud="someone-else"),
        _token(iss="https://evil.example"),
        _token(secret="not-the-secret-but-long-enough-0123456789"),
        _token(sub=None),
        _token(secret=DEV_JWT_SECRET * 2, algorithm="HS384"),
        "not.a.jwt",
    ],
    ids=["expired", "audience", "issuer", "signature", "no-sub", "algorithm", "garbage"],
)
async def test_an_invalid_token_is_401(start_gateway: StartGateway, token: str) -> None:
    gateway = await start_gateway(as_role=None)

    response = await gateway.get("/api/v1/alerts", headers=_auth(token))

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["type"] == "urn:crm:problem:unauthorized"


async def test_an_unsigned_token_is_refused(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(as_role=None)
    unsigned = jwt.encode({"sub": "x", "role": "admin", "aud": "crm-api", "iss": "crm-local", "exp": 2**31}, None,
                          algorithm="none")  # fmt: skip

    assert (await gateway.get("/api/v1/alerts", headers=_auth(unsigned))).status_code == 401


async def test_a_valid_token_with_the_wrong_role_is_403_naming_the_permission(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(as_role="analyst")

    response = await gateway.post("/api/v1/rules", json={})

    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["permission"] == "rules:write"
    assert "www-authenticate" not in response.headers


async def test_an_unknown_role_may_do_nothing(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(as_role=None)

    response = await gateway.get("/api/v1/alerts", headers=_auth(_token(role="superuser")))

    assert response.status_code == 403


async def test_each_role_reaches_exactly_its_routes(start_gateway: StartGateway, fakes: dict[str, FakeService]) -> None:
    # Unscoped routes only here; owner-scoped narrowing has its own tests (test_authz.py).
    gateway = await start_gateway(as_role=None)
    cases = [("GET", "/api/v1/scores"), ("POST", "/api/v1/rules"), ("POST", "/api/v1/interactions/bulk"),
             ("GET", "/api/v1/retention/metrics"), ("GET", "/api/v1/models"), ("GET", "/api/v1/alerts/stream"),
             ("POST", "/api/v1/customers/bulk")]  # fmt: skip
    for role in ("analyst", "admin", "integration"):
        for method, path in cases:
            rule = next(r for r in PERMISSIONS if r.matches(method, path[8:].split("/")))
            response = await gateway.request(method, path, headers=bearer(role), json={} if method == "POST" else None)
            expected = 200 if rule.permission in ROLE_PERMISSIONS[role] else 403
            assert response.status_code == expected, (role, method, path)


async def test_a_route_no_rule_covers_is_admin_only(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(as_role=None)

    assert (await gateway.put("/api/v1/customers/c-1", headers=bearer("agent"))).status_code == 403
    assert (await gateway.put("/api/v1/customers/c-1", headers=bearer("admin"))).status_code == 200


async def test_an_unknown_api_path_is_404_for_an_authenticated_caller(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(as_role="agent")

    response = await gateway.get("/api/v1/no-such-thing")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


async def test_tokens_from_an_identity_provider_are_checked_against_its_jwks(
    start_gateway: StartGateway, fakes: dict[str, FakeService]
) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True) | {"kid": "k1", "use": "sig"}
    idp = FastAPI()

    @idp.get("/.well-known/jwks.json")
    async def jwks() -> dict:
        return {"keys": [jwk]}

    servers = Servers()
    try:
        url = await servers.start(idp)
        gateway = await start_gateway(as_role=None, jwks_url=f"{url}/.well-known/jwks.json", jwt_secret="")
        good = _token(secret=private, algorithm="RS256", headers={"kid": "k1"}, role="analyst")
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = _token(secret=other, algorithm="RS256", headers={"kid": "k1"}, role="analyst")
        hs256 = _token(role="analyst")  # HS256 is off when only a JWKS is configured

        assert (await gateway.get("/api/v1/scores", headers=_auth(good))).status_code == 200
        assert (await gateway.get("/api/v1/scores", headers=_auth(forged))).status_code == 401
        assert (await gateway.get("/api/v1/scores", headers=_auth(hs256))).status_code == 401
    finally:
        await servers.stop()


# ---- API keys -------------------------------------------------------------------------------------------


async def test_an_api_key_is_shown_once_works_for_its_role_and_stops_working_when_revoked(
    start_gateway: StartGateway,
) -> None:
    admin = await start_gateway(api_key_cache_s=0)
    created = await admin.post("/api/v1/keys", json={"name": "erp", "role": "integration"})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("crmk_")
    assert created.headers["location"] == f"/api/v1/keys/{created.json()['id']}"

    listed = (await admin.get("/api/v1/keys")).json()
    assert [item["name"] for item in listed["items"]] == ["erp"]
    assert "key" not in listed["items"][0]
    assert key.split("_", 2)[2] not in str(listed)

    integration = httpx.AsyncClient(base_url=str(admin.base_url), trust_env=False)
    async with integration:
        assert (await integration.post("/api/v1/interactions", json={}, headers={"X-API-Key": key})).status_code == 200
        assert (await integration.get("/api/v1/alerts", headers=_auth(key))).status_code == 200
        # The integration role may not read scores.
        assert (await integration.get("/api/v1/customers/c-1/scores", headers={"X-API-Key": key})).status_code == 403
        wrong_secret = key[:-4] + "AAAA"
        assert (await integration.get("/api/v1/alerts", headers={"X-API-Key": wrong_secret})).status_code == 401

        assert (await admin.delete(f"/api/v1/keys/{created.json()['id']}")).status_code == 204
        assert (await integration.get("/api/v1/alerts", headers={"X-API-Key": key})).status_code == 401


async def test_an_api_key_can_be_scoped_below_its_role(start_gateway: StartGateway) -> None:
    admin = await start_gateway(api_key_cache_s=0)
    key = (
        await admin.post("/api/v1/keys", json={"name": "feed", "role": "integration", "scopes": ["alerts:read"]})
    ).json()["key"]

    assert (await admin.get("/api/v1/alerts", headers={"Authorization": "", "X-API-Key": key})).status_code == 200
    assert (await admin.post("/api/v1/interactions", json={}, headers={"X-API-Key": key})).status_code == 403


async def test_a_key_cannot_be_scoped_beyond_its_role(start_gateway: StartGateway) -> None:
    admin = await start_gateway()

    response = await admin.post("/api/v1/keys", json={"name": "x", "role": "integration", "scopes": ["keys:admin"]})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "scopes"


async def test_only_admins_manage_keys(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(as_role="manager")

    assert (await gateway.get("/api/v1/keys")).status_code == 403
    assert (await gateway.post("/api/v1/keys", json={"name": "x"})).status_code == 403


# ---- rate limits ---------------------------------------------------------------------------------------


async def test_above_the_quota_the_answer_is_429_with_retry_after(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(as_role="agent", rate_limits={"agent": 1.0}, rate_burst_factor=2.0)

    statuses = [(await gateway.get("/api/v1/playbooks")).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    response = await gateway.get("/api/v1/playbooks")
    assert response.status_code == 429
    assert response.headers["content-type"] == PROBLEM
    assert int(response.headers["retry-after"]) >= 1
    # Another caller has a bucket of its own.
    assert (await gateway.get("/api/v1/playbooks", headers=bearer("agent", sub="bob"))).status_code == 200


async def test_with_authentication_off_every_caller_is_an_admin(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(as_role=None, auth=False)

    assert (await gateway.get("/api/v1/keys")).status_code == 200


async def test_the_gateway_metrics_need_the_metrics_token_when_one_is_set(
    start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_METRICS_TOKEN", "gw-metrics-token")
    gateway = await start_gateway(as_role=None)
    assert (await gateway.get("/metrics")).status_code == 401
    assert (await gateway.get("/metrics", headers={"Authorization": "Bearer gw-metrics-token"})).status_code == 200

"""The gateway's production mode rules and its HS256 policy when an identity provider's JWKS is set."""

import logging
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from gateway.app import create_app
from gateway.settings import DEV_API_KEY_PEPPER, DEV_JWT_SECRET, GatewaySettings, default_secrets, production_problems
from servicekit.auth import InternalAuthSettings
from servicekit.production import ProductionConfigError
from tests.unit.gateway.conftest import StartGateway
from tests.unit.gateway.fakes import Servers

STRONG = "s" * 32
INTERNAL = InternalAuthSettings(internal_token="i" * 32, internal_auth=True)


def _settings(**values: Any) -> GatewaySettings:
    defaults = {
        "jwt_secret": STRONG,
        "api_key_pepper": "p" * 32,
        "database_url": "postgresql+asyncpg://gateway@db/gateway",
    }
    return GatewaySettings(**{**defaults, **values})


def test_strong_secrets_and_exact_cors_origins_raise_no_problem() -> None:
    assert production_problems(_settings(cors_origins=["https://crm.example.com"]), INTERNAL) == []


def test_the_default_jwt_secret_is_a_problem_naming_its_variable() -> None:
    [problem] = production_problems(_settings(jwt_secret=DEV_JWT_SECRET), INTERNAL)
    assert problem.startswith("GATEWAY_JWT_SECRET") and "default" in problem


def test_a_jwt_secret_under_32_bytes_is_a_problem() -> None:
    [problem] = production_problems(_settings(jwt_secret="short-but-not-default"), INTERNAL)
    assert problem.startswith("GATEWAY_JWT_SECRET") and "32 bytes" in problem


def test_an_unused_jwt_secret_is_no_problem_when_only_the_jwks_is_trusted() -> None:
    settings = _settings(jwt_secret=DEV_JWT_SECRET, jwks_url="https://idp.example.com/jwks.json")
    assert production_problems(settings, INTERNAL) == []
    allowed = settings.model_copy(update={"jwt_allow_hs256": True})
    assert [p[:18] for p in production_problems(allowed, INTERNAL)] == ["GATEWAY_JWT_SECRET"]


def test_the_default_or_short_api_key_pepper_is_a_problem() -> None:
    for pepper in (DEV_API_KEY_PEPPER, "short"):
        [problem] = production_problems(_settings(api_key_pepper=pepper), INTERNAL)
        assert problem.startswith("GATEWAY_API_KEY_PEPPER")


def test_the_default_internal_secret_is_a_problem_in_the_gateway_too() -> None:
    [problem] = production_problems(_settings(), InternalAuthSettings(internal_auth=True))
    assert problem.startswith("CRM_INTERNAL_TOKEN")


@pytest.mark.parametrize("origins", [["*"], ["https://crm.example.com", "*"], ["null"]])
def test_a_wildcard_cors_origin_is_a_problem(origins: list[str]) -> None:
    [problem] = production_problems(_settings(cors_origins=origins), INTERNAL)
    assert problem.startswith("GATEWAY_CORS_ORIGINS")


def test_authentication_switched_off_is_a_problem() -> None:
    [problem] = production_problems(_settings(auth=False), INTERNAL)
    assert problem.startswith("GATEWAY_AUTH")


def test_a_jwks_fetched_in_clear_is_a_problem() -> None:
    [problem] = production_problems(_settings(jwt_secret="", jwks_url="http://idp/jwks.json"), INTERNAL)
    assert problem.startswith("GATEWAY_JWKS_URL")


def test_the_gateway_refuses_to_start_in_production_mode_with_development_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CRM_PRODUCTION", "true")
    settings = GatewaySettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
    with pytest.raises(ProductionConfigError) as refused:
        create_app(settings)
    for variable in ("CRM_INTERNAL_TOKEN", "GATEWAY_JWT_SECRET", "GATEWAY_API_KEY_PEPPER"):
        assert variable in str(refused.value)


def test_outside_production_the_gateway_warns_once_per_default_secret(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    settings = GatewaySettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
    assert default_secrets(settings, InternalAuthSettings()) == [
        "CRM_INTERNAL_TOKEN",
        "GATEWAY_JWT_SECRET",
        "GATEWAY_API_KEY_PEPPER",
    ]
    with caplog.at_level(logging.WARNING, logger="servicekit.production"):
        create_app(settings)
    messages = [r.getMessage() for r in caplog.records if r.name == "servicekit.production"]
    assert len(messages) == 3
    assert not any(DEV_JWT_SECRET in m or DEV_API_KEY_PEPPER in m for m in messages)


# ---- HS256 next to a JWKS -------------------------------------------------------------------------------


def _hs256(secret: str = DEV_JWT_SECRET) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": "mallory", "role": "admin", "iss": "crm-local", "aud": "crm-api", "iat": now, "exp": now + 60}
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}


async def _idp(servers: Servers) -> str:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True) | {"kid": "k1", "use": "sig"}
    idp = FastAPI()

    @idp.get("/jwks.json")
    async def jwks() -> dict[str, Any]:
        return {"keys": [jwk]}

    return f"{await servers.start(idp)}/jwks.json"


async def test_a_token_signed_with_the_development_secret_is_refused_once_a_jwks_is_configured(
    start_gateway: StartGateway,
) -> None:
    servers = Servers()
    try:
        # The development secret is still the configured default (not emptied): HS256 must be off anyway.
        gateway = await start_gateway(as_role=None, jwks_url=await _idp(servers))
        response = await gateway.get("/api/v1/scores", headers=_hs256())
        assert response.status_code == 401
    finally:
        await servers.stop()


async def test_hs256_next_to_a_jwks_works_only_when_explicitly_allowed(start_gateway: StartGateway) -> None:
    servers = Servers()
    try:
        gateway = await start_gateway(
            as_role=None, jwks_url=await _idp(servers), jwt_secret=STRONG, jwt_allow_hs256=True
        )
        assert (await gateway.get("/api/v1/scores", headers=_hs256(STRONG))).status_code == 200
    finally:
        await servers.stop()


def test_hs256_is_accepted_without_a_jwks_when_a_secret_is_set() -> None:
    assert GatewaySettings(jwt_secret=STRONG, database_url="sqlite+aiosqlite://").hs256_enabled
    assert not GatewaySettings(jwt_secret="", database_url="sqlite+aiosqlite://").hs256_enabled
    assert not GatewaySettings(jwks_url="https://idp/jwks", database_url="sqlite+aiosqlite://").hs256_enabled

"""Secrets and production mode on the real platform (issue 20, findings 2, 3 and 13).

A service reached directly (past the gateway, e.g. from a compromised pod) with a signature captured
or forged for another request is refused: the signature covers the query, the body, a timestamp and
a nonce. A process started in production mode with development secrets refuses to start and names
the setting.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from runner.launcher import Platform
from servicekit.auth import INTERNAL_HEADER, InternalAuthSettings, internal_headers, sign
from servicekit.settings import REPO_ROOT
from tests.platform import service_url

pytestmark = pytest.mark.e2e

PRINCIPAL = "kind=user&role=admin&sub=e2e-secrets"
JSON = {"content-type": "application/json"}


def _signer(platform: Platform) -> InternalAuthSettings:
    # The secret this run's launcher generated for every process.
    return InternalAuthSettings(internal_token=platform.specs["customer"].env["CRM_INTERNAL_TOKEN"], internal_auth=True)


def _customer_body() -> bytes:
    ref = f"sec-{uuid.uuid4().hex[:10]}"
    return (
        f'{{"name": "Secrets Test", "kind": "company", "segment": "smb", "owner": "agent-1", "external_ref": "{ref}"}}'
    ).encode()


async def test_a_correctly_signed_direct_call_passes_so_the_refusals_below_are_about_the_tampering(
    platform: Platform,
) -> None:
    signer = _signer(platform)
    body = _customer_body()
    async with httpx.AsyncClient(base_url=service_url("customer"), timeout=10) as service:
        headers = internal_headers("POST", "/customers", body=body, principal=PRINCIPAL, settings=signer)
        created = await service.post("/customers", content=body, headers={**headers, **JSON})
        assert created.status_code == 201, created.text

        headers = internal_headers("GET", "/customers", query="limit=1", principal=PRINCIPAL, settings=signer)
        assert (await service.get("/customers?limit=1", headers=headers)).status_code == 200


async def test_a_service_refuses_a_signature_whose_query_was_tampered_with(platform: Platform) -> None:
    signer = _signer(platform)
    async with httpx.AsyncClient(base_url=service_url("customer"), timeout=10) as service:
        headers = internal_headers("GET", "/customers", query="limit=1", principal=PRINCIPAL, settings=signer)
        response = await service.get("/customers?limit=200", headers=headers)

    assert response.status_code == 401
    assert response.json()["type"] == "urn:crm:problem:internal_credential_required"


async def test_a_service_refuses_a_signature_whose_body_was_tampered_with(platform: Platform) -> None:
    signer = _signer(platform)
    signed, sent = _customer_body(), _customer_body().replace(b"agent-1", b"agent-666")
    async with httpx.AsyncClient(base_url=service_url("customer"), timeout=10) as service:
        headers = internal_headers("POST", "/customers", body=signed, principal=PRINCIPAL, settings=signer)
        response = await service.post("/customers", content=sent, headers={**headers, **JSON})

    assert response.status_code == 401


async def test_a_service_refuses_an_old_signature_and_a_replayed_one(platform: Platform) -> None:
    signer = _signer(platform)
    body = _customer_body()
    old = sign(
        "POST",
        "/customers",
        token=signer.internal_token,
        timestamp=int(time.time()) - 120,
        body=body,
        principal=PRINCIPAL,
    )
    async with httpx.AsyncClient(base_url=service_url("customer"), timeout=10) as service:
        stale = {INTERNAL_HEADER: old, "x-crm-principal": PRINCIPAL, **JSON}
        assert (await service.post("/customers", content=body, headers=stale)).status_code == 401

        fresh = {**internal_headers("POST", "/customers", body=body, principal=PRINCIPAL, settings=signer), **JSON}
        assert (await service.post("/customers", content=body, headers=fresh)).status_code == 201
        replayed = await service.post("/customers", content=body, headers=fresh)
        assert replayed.status_code == 401  # the same nonce again, within the window


def _start(argv: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_", "GATEWAY_", "KAFKA_"))}
    full = {**clean, "CRM_STATE_DIR": str(tmp_path), "CRM_PRODUCTION": "true", **env}
    return subprocess.run([sys.executable, *argv], env=full, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def test_a_service_started_in_production_mode_with_the_default_secret_refuses_to_start(tmp_path: Path) -> None:
    # Port 1: it must exit before it would ever listen.
    result = _start(["-m", "services.customer", "api", "--no-migrate", "--port", "1"], {}, tmp_path)

    assert result.returncode != 0
    assert "CRM_INTERNAL_TOKEN" in result.stderr + result.stdout
    assert "KAFKA_SECURITY_PROTOCOL" in result.stderr + result.stdout


def test_the_gateway_started_in_production_mode_with_development_secrets_refuses_to_start(tmp_path: Path) -> None:
    env = {"CRM_INTERNAL_TOKEN": "i" * 40, "GATEWAY_PORT": "1", "GATEWAY_CORS_ORIGINS": '["*"]'}
    result = _start(["-m", "gateway"], env, tmp_path)

    output = result.stderr + result.stdout
    assert result.returncode != 0
    for variable in ("GATEWAY_JWT_SECRET", "GATEWAY_API_KEY_PEPPER", "GATEWAY_CORS_ORIGINS"):
        assert variable in output
    assert "i" * 40 not in output  # a secret's value is never printed


def test_the_gateway_starts_in_production_mode_once_every_setting_is_set(tmp_path: Path) -> None:
    # `python -m gateway migrate` stops before serving, but only after the settings are read; the app
    # factory's check is what matters, so build the app in a subprocess with production settings.
    env = {
        "CRM_INTERNAL_TOKEN": "i" * 40,
        "GATEWAY_JWT_SECRET": "j" * 40,
        "GATEWAY_API_KEY_PEPPER": "p" * 40,
        "GATEWAY_CORS_ORIGINS": '["https://crm.example.com"]',
        # Shared by every replica; only read when the app starts serving, so no server is needed here.
        "GATEWAY_DATABASE_URL": "postgresql+asyncpg://gateway@127.0.0.1:1/gateway",
    }
    result = _start(["-c", "from gateway.app import create_app; create_app(); print('built')"], env, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "built" in result.stdout

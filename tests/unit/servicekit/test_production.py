"""Production mode (CRM_PRODUCTION): each rule of the services' common part, the Kafka client settings,
and the startup warning about development secrets."""

import logging
import ssl
from pathlib import Path

import pytest

from servicekit.auth import DEV_INTERNAL_TOKEN, InternalAuthSettings
from servicekit.kafka import make_consumer, make_producer, security_kwargs
from servicekit.production import (
    ProductionConfigError,
    enforce,
    internal_auth_problems,
    kafka_problems,
    service_problems,
)
from servicekit.settings import KafkaSettings, PlatformSettings

STRONG = "x" * 32
PRODUCTION = PlatformSettings(production=True)
DEVELOPMENT = PlatformSettings(production=False)


def _internal(**values: object) -> InternalAuthSettings:
    return InternalAuthSettings(**{"internal_token": STRONG, "internal_auth": True, **values})


def _kafka(**values: object) -> KafkaSettings:
    return KafkaSettings(**{"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": "p", **values})


def test_production_mode_is_one_setting_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_PRODUCTION", "true")
    assert PlatformSettings().production is True
    monkeypatch.delenv("CRM_PRODUCTION")
    assert PlatformSettings().production is False


def test_a_strong_internal_secret_and_an_encrypted_broker_raise_no_problem() -> None:
    assert service_problems(_kafka(), _internal()) == []


def test_the_default_internal_secret_is_a_problem_naming_its_variable() -> None:
    [problem] = internal_auth_problems(_internal(internal_token=DEV_INTERNAL_TOKEN))
    assert problem.startswith("CRM_INTERNAL_TOKEN") and "default" in problem


def test_a_short_internal_secret_is_a_problem_naming_its_variable() -> None:
    [problem] = internal_auth_problems(_internal(internal_token="x" * 31))
    assert problem.startswith("CRM_INTERNAL_TOKEN") and "shorter than 32 bytes" in problem


def test_a_long_placeholder_secret_is_a_problem() -> None:
    [problem] = internal_auth_problems(_internal(internal_token="CHANGE_ME-internal-token-0123456789abcdef"))
    assert problem.startswith("CRM_INTERNAL_TOKEN") and "placeholder" in problem


def test_internal_auth_switched_off_is_a_problem() -> None:
    [problem] = internal_auth_problems(_internal(internal_auth=False))
    assert problem.startswith("CRM_INTERNAL_AUTH")


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_an_unencrypted_broker_connection_is_a_problem_unless_explicitly_allowed(protocol: str) -> None:
    kafka = _kafka(security_protocol=protocol, sasl_mechanism="SCRAM-SHA-512")
    [problem] = kafka_problems(kafka)
    assert problem.startswith("KAFKA_SECURITY_PROTOCOL") and "KAFKA_ALLOW_PLAINTEXT" in problem

    assert kafka_problems(kafka.model_copy(update={"allow_plaintext": True})) == []


def test_a_sasl_plain_password_in_clear_is_a_problem_even_when_plaintext_is_allowed() -> None:
    kafka = _kafka(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", allow_plaintext=True)
    [problem] = kafka_problems(kafka)
    assert problem.startswith("KAFKA_SASL_MECHANISM")


def test_a_sasl_protocol_without_a_login_is_a_problem() -> None:
    [problem] = kafka_problems(_kafka(sasl_password=""))
    assert problem.startswith("KAFKA_SASL_USERNAME")


def test_production_mode_refuses_to_start_and_names_every_problem() -> None:
    problems = service_problems(KafkaSettings(), _internal(internal_token=DEV_INTERNAL_TOKEN))
    with pytest.raises(ProductionConfigError) as refused:
        enforce(PRODUCTION, problems, [], process="the customer service")
    assert "CRM_INTERNAL_TOKEN" in str(refused.value)
    assert "KAFKA_SECURITY_PROTOCOL" in str(refused.value)
    assert "CRM_PRODUCTION=true" in str(refused.value)


def test_outside_production_each_default_secret_is_one_warning_without_its_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="servicekit.production"):
        enforce(DEVELOPMENT, ["CRM_INTERNAL_TOKEN is ..."], ["CRM_INTERNAL_TOKEN"], process="the customer service")
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "CRM_INTERNAL_TOKEN" in record.getMessage()
    assert DEV_INTERNAL_TOKEN not in record.getMessage()


def test_a_service_app_refuses_to_be_built_in_production_mode_with_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from servicekit.service import create_app
    from services.customer.main import SPEC

    monkeypatch.setenv("CRM_PRODUCTION", "true")
    monkeypatch.setenv("CRM_INTERNAL_AUTH", "on")
    monkeypatch.delenv("CRM_INTERNAL_TOKEN", raising=False)
    settings = SPEC.settings_cls(database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(ProductionConfigError, match="CRM_INTERNAL_TOKEN"):
        create_app(SPEC, settings)


# ---- Kafka client settings ---------------------------------------------------------------------------


def test_plaintext_passes_only_the_protocol_to_the_clients() -> None:
    assert security_kwargs(KafkaSettings()) == {"security_protocol": "PLAINTEXT"}


async def test_sasl_and_tls_settings_reach_the_producer_and_the_consumer() -> None:
    kafka = _kafka(sasl_mechanism="SCRAM-SHA-256", sasl_username="crm", sasl_password="pw")
    kwargs = security_kwargs(kafka)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("crm", "pw")
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)

    producer = make_producer(kafka, client_id="t")
    consumer = make_consumer(kafka, "topic", group_id="g", client_id="t", max_records=10)
    for client in (producer.client, consumer._client):
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == "SCRAM-SHA-256"
        assert client._sasl_plain_username == "crm"
        assert client._sasl_plain_password == "pw"
        assert isinstance(client._ssl_context, ssl.SSLContext)
    await producer.stop()
    await consumer.stop()


def test_the_kafka_security_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("KAFKA_ALLOW_PLAINTEXT", "true")
    kafka = KafkaSettings()
    assert kafka.security_protocol == "SSL" and kafka.allow_plaintext is True

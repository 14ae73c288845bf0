"""Production mode (CRM_PRODUCTION=true): a process refuses to start on a setting that is unsafe there.

Each check is a pure function of settings that returns one message per problem, naming the environment
variable to set. Every process (each service and the gateway) calls ``enforce`` from its app factory with
its own list: in production mode any problem stops it; otherwise it logs one WARNING per development
default secret in use (never the value). The gateway adds its own checks (gateway.settings).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from servicekit.auth import DEV_INTERNAL_TOKEN, InternalAuthSettings
from servicekit.settings import KafkaSettings, PlatformSettings

log = logging.getLogger("servicekit.production")

MIN_SECRET_BYTES = 32  # 256 bits: what HMAC-SHA256 and HS256 keys need to resist guessing


class ProductionConfigError(RuntimeError):
    """The process runs in production mode with settings that are unsafe there."""


def secret_problem(variable: str, value: str, development_default: str) -> str | None:
    """Why ``value`` is unfit as a production secret, or None."""
    if value == development_default:
        return f"{variable} is the development default; set a random secret of {MIN_SECRET_BYTES} bytes or more"
    if "change-me" in value.lower().replace("_", "-"):
        return f"{variable} is still a placeholder (CHANGE_ME); set a random secret of {MIN_SECRET_BYTES} bytes or more"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"{variable} is shorter than {MIN_SECRET_BYTES} bytes; set a random secret that long or longer"
    return None


def internal_auth_problems(internal: InternalAuthSettings) -> list[str]:
    """The internal credential between the gateway and the services (every process signs or checks it)."""
    problems = []
    if not internal.internal_auth:
        problems.append("CRM_INTERNAL_AUTH is off: the services would accept unsigned calls; remove it")
    problem = secret_problem("CRM_INTERNAL_TOKEN", internal.internal_token, DEV_INTERNAL_TOKEN)
    if problem:
        problems.append(problem)
    return problems


def kafka_problems(kafka: KafkaSettings) -> list[str]:
    """The broker connection of a process that produces or consumes."""
    problems = []
    encrypted = kafka.security_protocol in ("SSL", "SASL_SSL")
    if not encrypted and not kafka.allow_plaintext:
        problems.append(
            f"KAFKA_SECURITY_PROTOCOL is {kafka.security_protocol}: events would cross the network unencrypted; "
            "use SSL or SASL_SSL, or set KAFKA_ALLOW_PLAINTEXT=true for a broker on a private network"
        )
    if kafka.security_protocol == "SASL_PLAINTEXT" and kafka.sasl_mechanism == "PLAIN":
        # Allowing unencrypted events is one thing; sending the password itself in clear is another.
        problems.append(
            "KAFKA_SASL_MECHANISM is PLAIN over SASL_PLAINTEXT: the password would travel in clear; "
            "use SASL_SSL or a SCRAM mechanism"
        )
    if kafka.security_protocol.startswith("SASL_") and not (kafka.sasl_username and kafka.sasl_password):
        problems.append("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD must both be set with a SASL protocol")
    return problems


def service_problems(kafka: KafkaSettings, internal: InternalAuthSettings) -> list[str]:
    """Everything production mode checks in a service process."""
    return [*internal_auth_problems(internal), *kafka_problems(kafka)]


def enforce(
    platform: PlatformSettings, problems: Sequence[str], default_secrets: Sequence[str], *, process: str
) -> None:
    """Refuse to start on any problem in production mode; otherwise warn once per default secret in use."""
    if platform.production and problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise ProductionConfigError(f"{process} refuses to start in production mode (CRM_PRODUCTION=true):\n{listed}")
    for variable in default_secrets:
        # The variable's name only, never its value.
        log.warning(f"{variable} is a development default; set your own secret before exposing {process}")


def default_internal_secrets(internal: InternalAuthSettings) -> list[str]:
    return ["CRM_INTERNAL_TOKEN"] if internal.internal_token == DEV_INTERNAL_TOKEN else []

"""Settings shared by every service; each service subclasses ServiceSettings with its own env prefix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

# Default HTTP ports, declared once: each service's settings, the gateway's upstream URLs and the launcher
# take them from here.
SERVICE_PORTS: dict[str, int] = {"customer": 8001, "interaction": 8002, "scoring": 8003, "retention": 8004}
GATEWAY_PORT = 8000


def local_url(service: str) -> str:
    """The service's default address on this machine."""
    return f"http://127.0.0.1:{SERVICE_PORTS[service]}"


def state_dir() -> Path:
    """Where local runs keep SQLite files, Kafka data and logs (CRM_STATE_DIR, default ./.state)."""
    return Path(os.environ.get("CRM_STATE_DIR", REPO_ROOT / ".state"))


class KafkaSettings(BaseSettings):
    """Broker settings, shared by all services (KAFKA_*)."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"  # comma-separated host:port list of the brokers
    partitions: int = 6  # partitions of each topic, when `python -m runner.topic_setup ensure` creates it
    replication_factor: int = 1  # copies of each partition, when topics are created
    request_timeout_ms: int = 15000  # how long producers and consumers wait for a broker to answer
    # A consumer's fetch returns once this much data is there or consumer_fetch_wait_ms has passed: under
    # a trickle that gathers a few events per poll (one transaction each) instead of one, for at most
    # that much latency per hop. 1 byte: every event as soon as it arrives.
    consumer_fetch_min_bytes: int = Field(65536, ge=1)
    # The longest a fetch waits for consumer_fetch_min_bytes. A consumer pays mostly per batch, so a longer
    # wait costs less CPU under a trickle (measured in docs/performance/).
    consumer_fetch_wait_ms: int = Field(100, ge=0)
    # A consumer that has seen nothing for consumer_idle_after_s long-polls instead: its fetch returns with
    # the first byte, or after this long. Idle consumers then cost the broker a few fetches a second, not
    # twenty, and the first event after a lull comes at once; the next fetch gathers again.
    consumer_idle_fetch_wait_ms: int = Field(500, ge=0)
    # How long a consumer sees nothing before it long-polls (0: never).
    consumer_idle_after_s: float = Field(2.0, ge=0)
    # The most one fetch brings of one partition (aiokafka's default: 1 MiB). Fetched records wait in the
    # consumer until polled, so this and consumer_fetch_max_bytes bound what a lagging consumer holds
    # besides the poll in hand. Events are 0.7-0.8 KiB: 256 KiB is ~330 of them. A record batch larger
    # than this still comes whole when it is the first of the fetch, so no consumer is stuck behind one.
    consumer_max_partition_fetch_bytes: int = Field(262144, ge=1024)
    # The most one fetch brings in all, read into one buffer (aiokafka's default: 50 MiB): 1 MiB is ~1,300
    # events, several polls of consumer_batch_size. Per broker: fetches to several brokers run in parallel.
    consumer_fetch_max_bytes: int = Field(1048576, ge=1024)

    # ---- security (every producer, consumer and admin client; see docs/security/secrets.md) -------------
    # PLAINTEXT (local runs), SSL (TLS), SASL_SSL (TLS + SASL login) or SASL_PLAINTEXT.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"  # with SASL_*
    sasl_username: str = ""  # the SASL login (with SASL_*)
    sasl_password: str = ""  # its password (with SASL_*)
    ssl_cafile: str = ""  # CA bundle that signed the brokers' certificates (empty: the system's)
    ssl_certfile: str = ""  # client certificate, for brokers that require mutual TLS
    ssl_keyfile: str = ""  # the client certificate's private key
    # Production mode refuses an unencrypted connection (PLAINTEXT, SASL_PLAINTEXT) unless this is set,
    # e.g. for a broker reached only over a private network.
    allow_plaintext: bool = False


class PlatformSettings(BaseSettings):
    """Settings every process of the platform reads without a prefix (CRM_*)."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    # Test-only fault injection, e.g. "exit_before_publish" (see servicekit.outbox.relay).
    fault: str = ""
    # Production mode: a process refuses to start while a secret is a development default or short, a
    # credential would travel in plaintext, or CORS is permissive (docs/security/secrets.md).
    production: bool = False
    # The allocator of every process that runs a service's consume role, as the launcher starts it
    # (PYTHONMALLOC, read by Python at start-up): "malloc" puts Python's objects in glibc's heap, whose
    # free pages <NAME>_CONSUMER_MALLOC_TRIM_INTERVAL_S hands back after a lag burst; "" leaves Python's own
    # (pymalloc: faster, but it keeps partly used arenas, so a consumer's RSS stays at its high-water mark).
    consumer_pythonmalloc: Literal["", "malloc", "pymalloc"] = ""
    # How `make run` (runner.launcher) spreads each service's roles over processes: "combined", one process
    # per service (API, relay and consumer: the least memory and idle CPU); "consumer-apart", the consumer in
    # a process of its own beside the API with its relay, so that a bulk import served by the API does not
    # slow the consumer's replicas (docs/onboarding.md); "split", API, relay and consumer apart.
    layout: Literal["combined", "consumer-apart", "split"] = "combined"


class ServiceSettings(BaseSettings):
    """Base settings of one service process. Subclasses set env_prefix, name and port."""

    model_config = SettingsConfigDict(extra="ignore")

    name: str = "service"
    host: str = "127.0.0.1"  # address the service's HTTP API listens on
    port: int = 8000  # its port
    # SQLAlchemy async URL, e.g. postgresql+asyncpg://user:pw@host:5432/<name>; empty = the SQLite file
    # <CRM_STATE_DIR>/<name>.db.
    database_url: str = ""
    db_pool_size: int = 20  # PostgreSQL connections per process that consumes or only relays, opened as needed and kept
    # A process that serves only HTTP (its roles include api, not consume) has this many instead, all opened at
    # start-up: PostgreSQL's backends (about 6 MiB each once used) are then flat from the start, instead of
    # growing one request burst at a time up to the pool size over hours. Its requests run one or two
    # statements each; a burst beyond the pool waits for a connection in the process, not in a new backend.
    db_api_pool_size: int = Field(8, ge=1)
    db_pool_open_at_start: bool = True  # false: the HTTP process's connections too open as needed
    log_level: str = "INFO"  # JSON logs on stdout
    log_sql: bool = False  # log every SQL statement (debugging only)

    relay_batch_size: int = Field(500, ge=1)  # outbox rows the relay publishes per round
    # The relay is woken by each commit that wrote events; this is how often it looks anyway.
    relay_poll_interval_s: float = Field(1.0, gt=0)
    # Under load a relay starts a round at most this often, so the commits of those milliseconds share
    # one read, one produce request and one mark; woken after a lull it reads at once (0: no pacing).
    relay_min_round_interval_ms: float = Field(10.0, ge=0)
    outbox_retention_hours: float = Field(24.0, ge=0)  # published outbox rows are deleted after this long
    # How long a process uses the run-time settings overrides it read (docs/runtime-settings.md) before
    # reading them again; a change made through the process itself applies at once.
    runtime_settings_cache_s: float = Field(5.0, ge=0, le=300)

    # Kafka records handled per transaction (the most one poll brings). A lagging consumer's full polls set
    # the high-water mark of its memory, which Python's and glibc's allocators keep once freed: 500-record
    # batches raised the retention consumer's by ~8 MiB over 50-record ones, 200-record batches by none
    # measurable (bench.batch_memory), for about the same CPU per event (docs/performance/).
    consumer_batch_size: int = Field(200, ge=1)
    # Offsets are committed at most this often (0: after every poll). A crash or rebalance re-delivers up
    # to this much, which the inbox skips; committing after every small poll cost the broker more than
    # the events did.
    consumer_commit_interval_s: float = Field(0.5, ge=0)
    # Tries of an event whose handler fails before it goes to the dead-letter topic (database outages
    # are retried without limit instead).
    consumer_max_attempts: int = Field(3, ge=1)
    consumer_retry_backoff_s: float = Field(0.2, ge=0)  # pause before retry n is n times this
    # This service's consumer's fetch wait, over KAFKA_CONSUMER_FETCH_WAIT_MS (unset: that one), so a
    # consumer on a path someone waits for (complaint -> alert: retention) can fetch with a short wait
    # while bulk consumers keep gathering. The wait is latency per hop (twice over when a batch takes
    # longer than aiokafka's 100 ms prefetch backoff); each fetch that returns is a batch, and a batch
    # costs the consumer and PostgreSQL a fixed CPU whatever its size (retention: ~22 ms), so a shorter
    # wait costs CPU per second (docs/performance/2026-12-07-latency-5.md).
    consumer_fetch_wait_ms: int | None = Field(None, ge=0)
    # This service's consumer's fetch minimum, over KAFKA_CONSUMER_FETCH_MIN_BYTES (unset: that one).
    consumer_fetch_min_bytes: int | None = Field(None, ge=1)
    # On a SQLite store (the embedded default: every process on one machine) a consumer's batch costs a fixed
    # CPU whatever it carries (retention ~5-8 ms, scoring ~2-4 ms), a large share of the group's CPU at 100
    # interactions/s (docs/performance/2026-12-07-embedded-8.md). So there, unless a wait is set
    # (<NAME>_CONSUMER_FETCH_WAIT_MS or KAFKA_CONSUMER_FETCH_WAIT_MS), the consumer's fetch gathers for this
    # long: that much more latency per hop, for fewer batches. PostgreSQL stores keep the KAFKA_ one.
    sqlite_consumer_fetch_wait_ms: int = Field(250, ge=0)
    # On a SQLite store, unless <NAME>_RELAY_MIN_ROUND_INTERVAL_MS is set, a relay under load starts a round
    # at most this often (after a lull it still reads at once): fewer reads, produce requests and record
    # batches per second, for up to this much latency at the first hop.
    sqlite_relay_min_round_interval_ms: float = Field(50.0, ge=0)
    # After a batch, a consumer hands the wholly free pages of its heap back to the operating system
    # (glibc's malloc_trim, servicekit.allocator) at most this often (0: never). What a lag burst's batches
    # freed otherwise stays in the process; with CRM_CONSUMER_PYTHONMALLOC=malloc that is most of it.
    consumer_malloc_trim_interval_s: float = Field(0.0, ge=0)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    platform: PlatformSettings = Field(default_factory=PlatformSettings)

    @model_validator(mode="after")
    def _default_database(self) -> ServiceSettings:
        # The embedded default: one SQLite file per service under the state dir.
        if not self.database_url:
            path = state_dir() / f"{self.name}.db"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.database_url = f"sqlite+aiosqlite:///{path}"
        return self

    def secret_problems(self) -> list[str]:
        """Why the service's own secrets are unfit for production (none by default); production mode refuses
        to start on any, and outside it each is a warning."""
        return []

    def default_secrets(self) -> list[str]:
        """The names of the service's own secrets still at their development default (warned about)."""
        return []

    def consumer_kafka(self) -> KafkaSettings:
        """The broker settings this service's consumer fetches with: KAFKA_*, with its own overrides."""
        wait = self.consumer_fetch_wait_ms
        if wait is None and self.is_sqlite and "consumer_fetch_wait_ms" not in self.kafka.model_fields_set:
            wait = self.sqlite_consumer_fetch_wait_ms
        overrides = {
            name: value
            for name, value in (
                ("consumer_fetch_wait_ms", wait),
                ("consumer_fetch_min_bytes", self.consumer_fetch_min_bytes),
            )
            if value is not None
        }
        return self.kafka.model_copy(update=overrides) if overrides else self.kafka

    @property
    def is_sqlite(self) -> bool:
        """Whether the service's store is SQLite (the embedded default)."""
        return self.database_url.startswith("sqlite")

    def relay_round_interval_ms(self) -> float:
        """The relay's least interval between rounds under load: <NAME>_RELAY_MIN_ROUND_INTERVAL_MS, or on
        a SQLite store where that is not set, sqlite_relay_min_round_interval_ms."""
        if self.is_sqlite and "relay_min_round_interval_ms" not in self.model_fields_set:
            return self.sqlite_relay_min_round_interval_ms
        return self.relay_min_round_interval_ms

    @property
    def consumer_group(self) -> str:
        return self.name

    @property
    def event_source(self) -> str:
        return f"/crm/{self.name}"

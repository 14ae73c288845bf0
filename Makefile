# One command runs the platform (make run), one installs everything and passes every test (make test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The fast lane's prerequisite: the stamp only while there is none (see unit).
FAST_VENV := $(if $(wildcard $(STAMP)),,$(STAMP))

CONSOLE_STAMP := console/.build-stamp
CONSOLE_SOURCES := $(shell find console/src console/scripts -type f 2>/dev/null) console/index.html console/vite.config.ts console/tsconfig.json console/package.json console/package-lock.json

.PHONY: help install run status test unit check types lint format hooks kafka-up kafka-down pg-up pg-down clean chaos chaos-reduced bench docs

# Every target carries a `## ` comment, which is its line in `make help` (a unit test fails on one without).
help:  ## list every target with what it does
	@awk -F ':.*## ' '/^[A-Za-z0-9_-]+:.*## / {printf "  make %-17s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv with the pinned packages and fetch the Kafka jars
	bash deploy/kafka.sh install

# The console is rebuilt only when one of its sources changed (npm ci installs exactly the committed lock).
$(CONSOLE_STAMP): $(CONSOLE_SOURCES)
	cd console && npm ci --no-audit --no-fund --ignore-scripts && npm run build
	touch $(CONSOLE_STAMP)

console: $(CONSOLE_STAMP)  ## build the retention console (console/dist) when its sources changed

console-api: $(STAMP)  ## regenerate the console's typed API client from the gateway's merged OpenAPI
	$(BIN)/python console/export_openapi.py --write console/openapi.json
	cd console && (test -d node_modules || npm ci --no-audit --no-fund --ignore-scripts) && npm run gen:api

run: install console  ## run the whole platform locally (SQLite stores, local Kafka); gateway on :8000 (console at /console)
	$(BIN)/python -m runner.launcher

status: $(STAMP)  ## what runs (from make run), its health, consumer lag and outbox age
	$(BIN)/python -m runner.status

test: install console  ## install everything, start Kafka and PostgreSQL, run lint, format check, mypy and every test, stop them
	bash deploy/postgres.sh install
	bash deploy/chromium.sh install
	bash deploy/promtool.sh install
	bash deploy/test.sh

# The fast lane (unit, lint, types, check) installs the venv when there is none, but does not reinstall it
# because pyproject.toml is newer than the stamp (every checkout of a branch that touches it makes it so):
# run `make install` after changing dependencies. `make test` always goes through install.
# The unit tests run in one pytest-xdist worker per core (-n auto), without the API fuzzer's pytest plugins
# (schemathesis and hypothesis, which no unit test uses and every worker would import); `make test` runs
# them in one process with every plugin. They keep the bytecode and pytest's rewritten test modules in
# __pycache__ even where PYTHONDONTWRITEBYTECODE is set: without them every worker, and every process a
# test starts, compiles the whole project again (docs/performance/2026-12-07-check-3.md).
unit: $(FAST_VENV)  ## unit tests only (no broker, no database server), one worker per core
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest tests/unit -q -n auto -p no:schemathesis -p no:hypothesispytest

lint: $(FAST_VENV)  ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(FAST_VENV)  ## mypy (strict on servicekit and the pure domain modules)
	$(BIN)/mypy

check: lint types unit  ## the fast lane: lint, format, types and unit tests, no infrastructure

format: $(STAMP)  ## ruff format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

hooks: $(STAMP)  ## install the git pre-commit hooks (.pre-commit-config.yaml: the venv's ruff and mypy, nothing downloaded)
	$(BIN)/pre-commit install

kafka-up: install  ## start the local Kafka broker and create the topics
	bash deploy/kafka.sh start
	$(BIN)/python -m runner.topic_setup ensure

kafka-down:  ## stop the local Kafka broker
	bash deploy/kafka.sh stop

pg-up:  ## start the local PostgreSQL
	bash deploy/postgres.sh start

pg-down:  ## stop the local PostgreSQL
	bash deploy/postgres.sh stop

clean:  ## stop the local infrastructure and delete .state
	-bash deploy/kafka.sh stop
	-bash deploy/postgres.sh stop
	rm -rf .state console/dist $(CONSOLE_STAMP)

chaos: install  ## full fault-injection runs with their tables: one broker (every scenario, kills x3), then three brokers (chaos-cluster)
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.chaos
	$(BIN)/python -m bench.chaos_cluster

chaos-cluster: install  ## three brokers (RF 3, min ISR 2): leader and controller SIGKILL, a broker stopped 30 s, PostgreSQL SIGKILL per service
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.chaos_cluster

bench: install  ## load, latency and memory benchmark of the whole pipeline on PostgreSQL
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.pipeline

bench-sequences: install  ## memory and rate of the sequence engine: 100,000 steps due in the same minute (SQLite)
	$(BIN)/python -m bench.sequences
.PHONY: bench-api-single bench-gateway-single bench-single-http bench-sqlite-queue bench-soak bench-embedded chaos-cluster scaleout bench-scaleout bench-floor console console-api bench-tracing bench-overload bench-import bench-reports bench-sequences bench-status-bulk bench-cdnow-reports bench-console bench-campaign-launch bench-write-path bench-outbox-backlog
bench-tracing: install  ## CPU per interaction with tracing off vs on at 100% sampling, as a ratio in one run
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.tracing
bench-soak: install  ## memory soak: 30 min at 100 interactions/s through the gateway, every process's RSS growth after warm-up, count check
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.soak
bench-embedded: install  ## make run's layout (SQLite, one broker) at 100 interactions/s by an integration key: CPU per interaction, HTTP p50/p99
	$(BIN)/python -m bench.embedded
bench-overload: install  ## twice the sustainable rate through the gateway: p50/p99 per phase, shed share, recovery time, count check
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.overload
bench-import: install  ## crm import of generated customers, interactions and statuses on PostgreSQL: rows/s, time to scores, store counts
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.imports
bench-console: install  ## every API call of the console's pages over 100,000 customers / 10,000 open alerts on PostgreSQL: p50/p95
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.console
bench-write-path: install  ## the interaction API (single and bulk posts) and its outbox relay in process on PostgreSQL + Kafka: CPU ms and statements per interaction
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.write_path

bench-outbox-backlog: install  ## what the relay's backlog gauge costs PostgreSQL at 1,000 to 1,000,000 unpublished rows, before and after its cap
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.outbox_backlog
bench-status-bulk: install  ## one POST /customers/status/bulk of 2,000 rows (and its resend) on PostgreSQL: seconds and rows/s
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.status_bulk
bench-campaign-launch: install  ## one campaign launch over a 100,000-member audience on PostgreSQL (one touch, then a sequence): seconds, rows/s, peak memory
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.campaign_launch
bench-cdnow-reports: install  ## crm import cdnow on a fresh platform, then every report's figures into docs/reports-cdnow-<today>.md
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.cdnow_reports
bench-reports: install  ## every report over 100,000 customers / 1,000,000 interactions on PostgreSQL: p50/p95 and peak memory
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.reports

bench-api-single: install  ## one POST /interactions in process: as it runs vs the session path vs the framework path vs the floor, CPU ms, ratio, statements
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.api_single

bench-gateway-single: install  ## the gateway's own CPU per proxied POST /api/v1/interactions, in process, against a bare upstream
	$(BIN)/python -m bench.gateway_single

bench-single-http: install  ## single posts through the gateway to the interaction API on PostgreSQL: CPU ms per request per process, transactions
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.single_http

bench-sqlite-queue: install  ## SQLite's write lock at 100 posts/s: p50/p99 with SQLite's busy handler vs the in-process transaction queue
	$(BIN)/python -m bench.sqlite_queue

bench-floor: install  ## CPU floor of the platform's shape: bare HTTP hop, proxy, INSERT, Kafka record
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.floor

scaleout: install  ## throughput of 1 vs 2 scoring consumer instances in one group, draining a backlog
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.scaleout
bench-scaleout: install  ## a consumer group of 1, 2 and 4 scoring consumers over 4 partitions per topic: events/s and assignment
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.scaleout --instances 1,2,4 --partitions 4

chaos-reduced: install  ## the reduced fault-injection run that make test ends with
	bash deploy/postgres.sh install
	bash deploy/test.sh tests/chaos -s

docs: $(STAMP)  ## regenerate the event documents (docs/events), the configuration tables and the domain reference's tables
	$(BIN)/python -m contracts.asyncapi
	$(BIN)/python -m runner.settings_doc --write docs/configuration.md
	$(BIN)/python -m tools.domain_doc --write docs/domain.md

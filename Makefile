# One command runs the platform (make run), one installs everything and passes every test (make test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: help install run status test unit e2e lint format kafka-up kafka-down pg-up pg-down clean chaos bench

help:
	@echo "make run      run the whole platform locally (SQLite stores, local Kafka); gateway on :8000"
	@echo "make status   what runs (from make run), its health, consumer lag and outbox age"
	@echo "make test     install everything, start Kafka and PostgreSQL, run lint + every test, stop them"
	@echo "make unit     unit tests only (no broker, no database server)"
	@echo "make lint     ruff"
	@echo "make chaos    full fault-injection run (60 interactions/s through every scenario, kills x3) with its table"
	@echo "make bench    load, latency and memory benchmark of the whole pipeline on PostgreSQL"
	@echo "make scaleout throughput of 1 vs 2 scoring consumer instances in one group, draining a backlog"
	@echo "make bench-floor CPU floor of the platform's shape: bare HTTP hop, proxy, INSERT, Kafka record"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)
	bash deploy/kafka.sh install

run: install
	$(BIN)/python -m servicekit.launcher

status: $(STAMP)
	$(BIN)/python -m servicekit.status

test: install
	bash deploy/postgres.sh install
	bash deploy/promtool.sh install
	bash deploy/test.sh

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

kafka-up: install
	bash deploy/kafka.sh start
	$(BIN)/python -m servicekit.topics ensure

kafka-down:
	bash deploy/kafka.sh stop

pg-up:
	bash deploy/postgres.sh start

pg-down:
	bash deploy/postgres.sh stop

clean:
	-bash deploy/kafka.sh stop
	-bash deploy/postgres.sh stop
	rm -rf .state

chaos: install
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.chaos

bench: install
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.pipeline

.PHONY: scaleout bench-floor
bench-floor: install
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.floor

scaleout: install
	bash deploy/postgres.sh install
	$(BIN)/python -m bench.scaleout

chaos-reduced: install
	bash deploy/postgres.sh install
	bash deploy/test.sh tests/chaos -s

docs: $(STAMP)
	$(BIN)/python -m servicekit.events.docs

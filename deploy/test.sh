#!/usr/bin/env bash
# Runs the whole suite against a real Kafka broker and a real PostgreSQL started here, and stops both
# afterwards, also on failure. Its own state dir and ports keep it apart from a running `make run`.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

export CRM_STATE_DIR="${CRM_TEST_STATE_DIR:-$REPO_ROOT/.state/test}"
export KAFKA_PORT="${CRM_TEST_KAFKA_PORT:-19092}"
export KAFKA_CONTROLLER_PORT="${CRM_TEST_KAFKA_CONTROLLER_PORT:-19093}"
export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT"
export PG_PORT="${CRM_TEST_PG_PORT:-55433}"
export CRM_TEST_PG_PORT="$PG_PORT"
BIN="$REPO_ROOT/.venv/bin"

cleanup() {
    local code=$?
    echo "== stopping test infrastructure"
    bash deploy/kafka.sh stop || true
    bash deploy/postgres.sh stop || true
    exit "$code"
}
trap cleanup EXIT

# `deploy/test.sh [pytest args]` runs only the given tests against fresh infrastructure (no lint, no unit run).
if [[ $# -eq 0 ]]; then
    echo "== lint"
    "$BIN/ruff" check .
    "$BIN/ruff" format --check .
    echo "== types (mypy)"
    "$BIN/mypy"
    echo "== unit tests (no broker, no database server)"
    "$BIN/python" -m pytest tests/unit -q -p no:cacheprovider
    echo "== alert rules: promtool check rules + promtool test rules (deploy/promtool.sh install provides it)"
    bash deploy/promtool.sh check
fi

echo "== starting Kafka on :$KAFKA_PORT and PostgreSQL on :$PG_PORT"
# A fresh broker every run: no topics or offsets left over from an earlier run.
bash deploy/kafka.sh reset
bash deploy/kafka.sh start
bash deploy/postgres.sh start
"$BIN/python" -m runner.topic_setup ensure

if [[ $# -gt 0 ]]; then
    echo "== pytest $* (real Kafka, real PostgreSQL)"
    # Not exec: the EXIT trap must still stop the broker and the database server.
    "$BIN/python" -m pytest -q -p no:cacheprovider "$@"
    exit 0
fi
echo "== contract and end-to-end tests (real Kafka, real PostgreSQL)"
FUZZ=tests/e2e/test_gateway_security.py::test_schemathesis_finds_no_failure_of_any_check
"$BIN/python" -m pytest -q -p no:cacheprovider tests/contract tests/e2e tests/security tests/console --deselect "$FUZZ"
# The API fuzz runs last, in a pytest session of its own: as an admin it changes and deletes rules and playbooks
# (the seeded ones included), which every later test of a shared platform would otherwise inherit.
echo "== API fuzzing (schemathesis), after every other test"
"$BIN/python" -m pytest -q -p no:cacheprovider "$FUZZ"

# Last, because it SIGKILLs the broker and restarts PostgreSQL, which no other test may see. A fresh
# broker of its own, so the dead-letter topics hold only its poison messages; its databases are its own
# (chaos_*). Its platform listens on ports + CRM_CHAOS_PORT_OFFSET (default 20000).
echo "== fault injection, reduced (make chaos runs the full form)"
bash deploy/kafka.sh reset
bash deploy/kafka.sh start
"$BIN/python" -m runner.topic_setup ensure
"$BIN/python" -m pytest -q -p no:cacheprovider -s tests/chaos

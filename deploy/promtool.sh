#!/usr/bin/env bash
# promtool, for checking and unit-testing the Prometheus alert rules (deploy/prometheus/rules/).
# It ships in Debian's `prometheus` package (about 96 MB installed: the server, promtool and the web UI's
# JavaScript); no smaller Debian package carries it. Only the binary is used: the package's service is
# never started by this project (and in a container without systemd its postinst cannot start it).
#
# Usage: deploy/promtool.sh {install|path|check}
#   install   apt-get install the package when promtool is missing (root, or sudo)
#   path      print the promtool binary (exit 1 when missing)
#   check     promtool check rules + promtool test rules on the project's rules and rule tests
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RULES_DIR="$REPO_ROOT/deploy/prometheus/rules"
TESTS_DIR="$REPO_ROOT/deploy/prometheus/tests"

log() { printf '[promtool] %s\n' "$*" >&2; }
die() { printf '[promtool] ERROR: %s\n' "$*" >&2; exit 1; }

find_promtool() { command -v promtool 2>/dev/null || { [[ -x /usr/bin/promtool ]] && echo /usr/bin/promtool; }; }

cmd_install() {
    if find_promtool >/dev/null; then return 0; fi
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "promtool is missing; run as root: apt-get update && apt-get install -y --no-install-recommends prometheus"
        sudo=(sudo)
    fi
    log "promtool not found; installing Debian's prometheus package (promtool only is used) ..."
    "${sudo[@]}" apt-get update -q || die "apt-get update failed"
    # policy-rc.d-less containers: the postinst may fail to start the daemon; that is not our concern,
    # so RUNLEVEL=1 keeps invoke-rc.d from trying.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -q --no-install-recommends prometheus ||
        die "apt-get install prometheus failed"
    find_promtool >/dev/null || die "prometheus installed but promtool not found"
}

cmd_check() {
    local promtool
    promtool="$(find_promtool)" || die "promtool is missing (run: bash deploy/promtool.sh install)"
    "$promtool" check rules "$RULES_DIR"/*.yml
    "$promtool" test rules "$TESTS_DIR"/*.yml
}

case "${1:-}" in
    install) cmd_install ;;
    path) find_promtool || exit 1 ;;
    check) cmd_check ;;
    *) echo "usage: $0 {install|path|check}" >&2; exit 2 ;;
esac

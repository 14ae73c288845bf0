#!/usr/bin/env bash
# Headless Chromium for the console's browser tests: Debian's chromium package (Playwright's own browser
# download is never used; the tests point Playwright at this executable).
#
# Usage: deploy/chromium.sh {install|path}
#
# Environment:
#   CRM_CHROMIUM   the executable (default: /usr/bin/chromium, else chromium or chromium-browser on PATH)
set -euo pipefail

log() { printf '[chromium] %s\n' "$*" >&2; }
die() { printf '[chromium] ERROR: %s\n' "$*" >&2; exit 1; }

find_chromium() {
    local candidate
    for candidate in "${CRM_CHROMIUM:-}" /usr/bin/chromium "$(command -v chromium 2>/dev/null || true)" \
        "$(command -v chromium-browser 2>/dev/null || true)"; do
        if [[ -n "$candidate" && -x "$candidate" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

cmd_install() {
    local found
    if found="$(find_chromium)"; then
        log "Chromium found: $found"
        return 0
    fi
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "Chromium is not installed; run as root: apt-get update && apt-get install -y chromium"
        sudo=(sudo)
    fi
    log "Chromium not found; installing Debian's chromium package ..."
    "${sudo[@]}" apt-get update -q || die "apt-get update failed"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-noto-cjk ||
        die "apt-get install chromium failed"
    found="$(find_chromium)" || die "chromium installed but no executable found"
    log "installed: $found"
}

case "${1:-}" in
    install) cmd_install ;;
    path) find_chromium || die "Chromium is not installed (run: deploy/chromium.sh install)" ;;
    *)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
        exit 2
        ;;
esac

#!/usr/bin/env bash
# tests/run.sh — THE test command for tether.
#
#   bash tests/run.sh
#
# 1. installs the stock tools the integration tests drive (Debian's redis 7.0
#    packages, nftables, iproute2) when any of them is missing (needs root);
# 2. builds everything in release mode (lib, bin, tests, benches, examples);
# 3. runs the whole cargo test suite; tests start their own servers on free
#    ports, so nothing needs to listen on 6379.
#
# Works unattended (CI=true, no stdin). Exits non-zero on any failure.
# Environment:
#   TEST_THREADS   parallel test threads (default 2)
#   CARGO_TEST_ARGS extra args passed to `cargo test` before `--`
#                  (e.g. CARGO_TEST_ARGS="--test strings")
#   SKIP_INSTALL=1 never call apt-get (fail if a tool is missing)
set -euo pipefail

cd "$(dirname "$0")/.."

START=$(date +%s)
TEST_THREADS=${TEST_THREADS:-2}
REQUIRED_TOOLS=(redis-server redis-cli redis-benchmark redis-sentinel nft ip)
APT_PACKAGES=(redis-server redis-tools redis-sentinel nftables iproute2)

# sbin dirs hold nft and ip; cargo usually lives in ~/.cargo/bin.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin:${CARGO_HOME:-$HOME/.cargo}/bin"

log()  { printf '\n==> %s\n' "$*"; }
die()  { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

missing_tools() {
    local t out=()
    for t in "${REQUIRED_TOOLS[@]}"; do
        command -v "$t" >/dev/null 2>&1 || out+=("$t")
    done
    echo "${out[*]:-}"
}

install_tools() {
    local missing
    missing=$(missing_tools)
    if [[ -z "$missing" ]]; then
        log "tools present: ${REQUIRED_TOOLS[*]}"
        return
    fi
    log "missing tools: $missing"
    [[ "${SKIP_INSTALL:-0}" == 1 ]] && die "SKIP_INSTALL=1 and tools missing: $missing"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: ${APT_PACKAGES[*]}"
    local SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo; install by hand: ${APT_PACKAGES[*]}"
        SUDO=(sudo -n)
    fi
    log "installing ${APT_PACKAGES[*]}"
    "${SUDO[@]}" apt-get update </dev/null || die "apt-get update failed"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y "${APT_PACKAGES[@]}" </dev/null \
        || die "apt-get install failed"
    # The Debian package starts its own redis-server on 6379; tests use free
    # ports, but don't leave a stray server eating CPU on a 2-core machine.
    "${SUDO[@]}" systemctl stop redis-server 2>/dev/null \
        || "${SUDO[@]}" service redis-server stop 2>/dev/null || true
    missing=$(missing_tools)
    [[ -z "$missing" ]] || die "still missing after install: $missing"
}

run_step() {
    # run_step NAME CMD... : runs a step, records its status and duration
    local name=$1; shift
    local t0=$(date +%s) rc=0
    log "$name: $*"
    "$@" </dev/null || rc=$?
    STEPS+=("$(printf '%-8s %-40s %4ss' "$([[ $rc -eq 0 ]] && echo ok || echo "FAILED($rc)")" "$name" "$(( $(date +%s) - t0 ))")")
    return $rc
}

summary() {
    local rc=$?
    printf '\n==================== tests/run.sh summary ====================\n'
    local s
    for s in "${STEPS[@]:-}"; do [[ -n "$s" ]] && printf '  %s\n' "$s"; done
    printf '  total %ss — %s\n' "$(( $(date +%s) - START ))" \
        "$([[ $rc -eq 0 ]] && echo 'ALL PASSED' || echo "FAILED (exit $rc)")"
    printf '==============================================================\n'
}
STEPS=()
trap summary EXIT

install_tools
command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust via rustup; PATH=$PATH)"
log "$(cargo --version); $(rustc --version); $(redis-server --version | head -1)"
log "uname: $(uname -sr); nproc: $(nproc); CI=${CI:-}"

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

run_step build cargo build --release --all-targets
# shellcheck disable=SC2086
run_step test cargo test --release --no-fail-fast ${CARGO_TEST_ARGS:-} -- --test-threads="$TEST_THREADS"

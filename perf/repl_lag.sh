#!/usr/bin/env bash
# perf/repl_lag.sh — replication lag as a round trip (#4: replica lag p99
# <= 1 ms at half of max load). Runs benches/repl_lag.rs: stock master +
# stock replica against tether master + tether replica, a probe that times
# SET + WAIT 1 (write -> replica applies -> ACK -> master) with no polling,
# idle and under a paced SET load; writes perf/results/repl-lag-*.txt.
#
# A benchmark, not a test: it asserts nothing about speed.
# Env: RL_SECS [5], RL_REPEATS [3], RL_RATE [180000], RL_PROBE_US [5000],
#      RL_LOADS ["idle half"] (RL_PROBE_US=0: closed loop), TETHER_BIN [the bench build's own binary],
#      REDIS_BIN [redis-server], RESULTS_DIR [perf/results]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'repl_lag: %s\n' "$*" >&2; exit 1; }
# shellcheck source=perf/lib.sh
. "$ROOT/perf/lib.sh"
need cargo
need taskset util-linux
need "${REDIS_BIN:-redis-server}" redis-server
RESULTS_DIR=${RESULTS_DIR:-$ROOT/perf/results}
mkdir -p "$RESULTS_DIR"
out=$RESULTS_DIR/repl-lag-$(date +%Y%m%d-%H%M%S).txt
log "building and running benches/repl_lag.rs (a few minutes)"
body=$(cd "$ROOT" && cargo bench --bench repl_lag 2>/dev/null)
{
    echo "tether replication round trip — perf/repl_lag.sh — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "uname:   $(uname -a)"
    echo "nproc:   $(nproc)"
    echo "cpu:     $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
    echo "redis:   $("${REDIS_BIN:-redis-server}" --version | head -n1)"
    echo "tether:  git $(git_rev)${TETHER_BIN:+; bin $TETHER_BIN}"
    echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, at end)"
    echo
    echo "$body"
} | tee "$out"
log "report: $out"

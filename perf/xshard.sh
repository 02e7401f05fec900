#!/usr/bin/env bash
# perf/xshard.sh — what a cross-shard hop costs (#4: remote >= 0.7x of local
# ops per server CPU-second). Runs benches/cross_shard.rs, which starts
# tether with 2 shards and drives it from clients that know their
# connection's shard (CLIENT INFO shard=), with every key local, every key
# remote, or keys mixed; writes the report to perf/results/xshard-*.txt.
#
# A benchmark, not a test: it asserts nothing about speed.
# Env: XS_SECS [3], XS_REPEATS [3], XS_CONNS [16], XS_DEPTHS ["1 16"],
#      XS_CMDS ["set get"], XS_MODES ["local remote mixed"],
#      TETHER_BIN [the bench build's own binary], RESULTS_DIR [perf/results]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'xshard: %s\n' "$*" >&2; exit 1; }
# shellcheck source=perf/lib.sh
. "$ROOT/perf/lib.sh"
need cargo
RESULTS_DIR=${RESULTS_DIR:-$ROOT/perf/results}
mkdir -p "$RESULTS_DIR"
out=$RESULTS_DIR/xshard-$(date +%Y%m%d-%H%M%S).txt
log "building and running benches/cross_shard.rs (a few minutes)"
body=$(cd "$ROOT" && cargo bench --bench cross_shard 2>/dev/null)
{
    echo "tether cross-shard hop — perf/xshard.sh — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "uname:   $(uname -a)"
    echo "nproc:   $(nproc)"
    echo "cpu:     $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
    echo "tether:  git $(git_rev)${TETHER_BIN:+; bin $TETHER_BIN}"
    echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, at end)"
    echo "Shards pin themselves to cores 0 and 1; the client threads share them."
    echo "ratio = ops/CPU-s against the first mode (local: every key on the connection's own shard)."
    echo
    echo "$body"
} | tee "$out"
log "report: $out"

#!/usr/bin/env bash
# perf/failover_bench.sh — how long FAILOVER holds writes, tether against
# stock redis-server in the same run.
#
# For each server kind: a master and one replica (tether pairs with 2
# shards, Redis pairs stock), in sync, a few writes, then FAILOVER with no
# target; a SET sent right after it is held by the failover's pause and
# answered (READONLY) when the old master has handed over. Its round trip
# is the write outage of a planned switch-over. The two nodes swap roles
# every round. Prints every round, the medians and tether/Redis.
#
# A benchmark, not a test: it asserts nothing about speed.
# Env: ROUNDS [10], TETHER_BIN [target/release/tether], RESULTS_DIR [perf/results]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'failover_bench: %s\n' "$*" >&2; exit 1; }
# shellcheck source=perf/lib.sh
. "$ROOT/perf/lib.sh"
need redis-server redis-server
need redis-cli redis-tools
ROUNDS=${ROUNDS:-10}
TETHER_BIN=${TETHER_BIN:-$ROOT/target/release/tether}
[[ -x $TETHER_BIN ]] || (cd "$ROOT" && cargo build --release >/dev/null 2>&1) || die "build failed"
RESULTS_DIR=${RESULTS_DIR:-$ROOT/perf/results}
mkdir -p "$RESULTS_DIR"
out=$RESULTS_DIR/failover-$(date +%Y%m%d-%H%M%S).txt
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

start() { # kind port
    local dir=$WORK/$2
    mkdir -p "$dir"
    if [[ $1 == tether ]]; then
        (cd "$dir" && exec "$TETHER_BIN" --port "$2" --shards 2 --save "" \
            --repl-diskless-sync-delay 0 >"$dir/log" 2>&1) &
    else
        (cd "$dir" && exec redis-server --port "$2" --save "" --appendonly no \
            --repl-diskless-sync-delay 0 >"$dir/log" 2>&1) &
    fi
    PIDS+=($!)
    for _ in $(seq 1 100); do
        [[ $(redis-cli -p "$2" ping 2>/dev/null) == PONG ]] && return
        sleep 0.05
    done
    die "$1 on port $2 did not start"
}

field() { # port name
    redis-cli -p "$1" info replication | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'
}

# The replica follows the master with its link up, at the master's offset,
# listed online by the master.
wait_synced() { # master replica
    for _ in $(seq 1 400); do
        if [[ $(field "$2" master_link_status) == up &&
              $(field "$1" master_repl_offset) == "$(field "$2" slave_repl_offset)" ]] &&
           redis-cli -p "$1" info replication | grep -q "port=$2,state=online"; then
            return
        fi
        sleep 0.05
    done
    die "replica $2 did not catch up with $1"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

declare -A MED
run_kind() { # kind
    local kind=$1 a b m r i t0 t1 reply ms all=()
    a=$(free_port); start "$kind" "$a"
    b=$(free_port); start "$kind" "$b"
    redis-cli -p "$b" replicaof 127.0.0.1 "$a" >/dev/null
    m=$a; r=$b
    for i in $(seq 1 "$ROUNDS"); do
        wait_synced "$m" "$r"
        for k in $(seq 1 20); do echo "SET key:$i:$k v"; done | redis-cli -p "$m" >/dev/null
        # Land anywhere in the replica's one-second ACK cycle.
        sleep "0.$((RANDOM % 10))"
        t0=$(date +%s%N)
        [[ $(redis-cli -p "$m" failover) == OK ]] || die "$kind: FAILOVER refused"
        reply=$(redis-cli -p "$m" set "probe:$i" x 2>&1)
        t1=$(date +%s%N)
        ms=$(( (t1 - t0) / 1000000 ))
        all+=("$ms")
        echo "$kind round $i: write held $ms ms, then: $reply" >&2
        for _ in $(seq 1 200); do
            [[ $(field "$m" master_failover_state) == no-failover ]] && break
            sleep 0.01
        done
        [[ $(field "$r" role) == master ]] || die "$kind: the replica did not take over"
        local x=$m; m=$r; r=$x
    done
    MED[$kind]=$(printf '%s\n' "${all[@]}" | median)
    printf '%s\n' "${all[@]}" | tr '\n' ' ' | sed "s/^/$kind rounds (ms): /" >"$WORK/$kind.rounds"
}

log "tether"
run_kind tether
log "redis"
run_kind redis
{
    echo "tether FAILOVER write hold — perf/failover_bench.sh — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "uname:   $(uname -a)"
    echo "nproc:   $(nproc)"
    echo "redis:   $(redis-server --version | head -n1)"
    echo "tether:  git $(git_rev); bin $TETHER_BIN"
    echo "A SET sent right after FAILOVER (no target), to the old master: its round trip, ms."
    echo
    cat "$WORK/tether.rounds"; echo
    cat "$WORK/redis.rounds"; echo
    echo
    echo "median write hold: tether ${MED[tether]} ms, redis ${MED[redis]} ms, tether/redis $(awk -v t="${MED[tether]}" -v r="${MED[redis]}" 'BEGIN { printf "%.2f", t / r }')x"
} | tee "$out"
log "report: $out"

#!/usr/bin/env bash
# perf/coll_growth.sh — does one big collection stall the server while it
# grows? tether vs stock redis-server, same machine, same run.
#
# A benchmark, not a test: it asserts nothing. For each TYPE (hash, set,
# zset) and each server (fresh per run, alternating redis, tether), one key
# grows from 0 to MEMBERS members through `redis-cli --pipe` (HSET big f:N v
# / SADD big m:N / ZADD big N m:N) while perf/mem_probe.py probe runs a
# closed-loop PING probe on its own connection. A dictionary rehashed all at
# once shows up as a max of tens of ms at each doubling; Redis rehashes
# incrementally. Control: the same load again once the members exist
# (overwrites, no growth): a stall there too is not the dictionary growing.
#
# Servers on SERVER_CPUS (core 0); redis-cli --pipe and the probe on
# CLIENT_CPUS (core 1, shared by the two: the probe's figures include that).
#
# Usage:  bash perf/coll_growth.sh        (~2 min with the defaults)
# Env (defaults in brackets):
#   TETHER_BIN   tether binary [target/release/tether]; never built here
#   REDIS_BIN    stock server [redis-server]
#   TYPES        ["hash set zset"]
#   MEMBERS      [4000000]
#   REPEATS      runs per type and server [1]
#   RESULTS_DIR  [perf/results]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'coll_growth: %s\n' "$*" >&2; exit 1; }
# shellcheck source=perf/lib.sh
. "$ROOT/perf/lib.sh"

TETHER_BIN=${TETHER_BIN:-$ROOT/target/release/tether}
REDIS_BIN=${REDIS_BIN:-redis-server}
TYPES=${TYPES:-hash set zset}
MEMBERS=${MEMBERS:-4000000}
REPEATS=${REPEATS:-1}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/perf/results}

need redis-cli redis-tools
need python3
need taskset util-linux
[[ -x $TETHER_BIN ]] || die "no tether binary at $TETHER_BIN (cargo build --release)"
mkdir -p "$RESULTS_DIR"
WORK=$(mktemp -d)
SRV_PID=
cleanup() {
    [[ -n $SRV_PID ]] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

gen() { # gen TYPE FILE
    python3 - "$1" "$MEMBERS" "$2" <<'EOF'
import sys
ty, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def cmd(*a):
    return b"*%d\r\n" % len(a) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in a)
with open(out, "wb") as f:
    for i in range(n):
        m = b"m:%08d" % i
        if ty == "hash":
            f.write(cmd(b"HSET", b"big", m, b"v"))
        elif ty == "set":
            f.write(cmd(b"SADD", b"big", m))
        else:
            f.write(cmd(b"ZADD", b"big", b"%d" % i, m))
EOF
}

start() { # start redis|tether PORT
    local dir=$WORK/srv
    rm -rf "$dir" && mkdir -p "$dir"
    if [[ $1 == redis ]]; then
        (cd "$dir" && exec taskset -c "$SERVER_CPUS" "$REDIS_BIN" --port "$2" --save "" --appendonly no) >/dev/null 2>&1 &
    else
        (cd "$dir" && exec taskset -c "$SERVER_CPUS" "$TETHER_BIN" --port "$2" --shards 1 --save "") >/dev/null 2>&1 &
    fi
    SRV_PID=$!
    for _ in $(seq 100); do redis-cli -p "$2" ping >/dev/null 2>&1 && return; sleep 0.05; done
    die "$1 did not start"
}

# One load with the probe running; prints the probe's JSON with the load's
# seconds added.
probed_load() { # probed_load PORT FILE
    taskset -c "$CLIENT_CPUS" python3 "$ROOT/perf/mem_probe.py" probe --port "$1" --cmd ping >"$WORK/probe.json" &
    local probe=$!
    sleep 0.5
    local t0 t1
    t0=$(date +%s.%N)
    taskset -c "$CLIENT_CPUS" redis-cli -p "$1" --pipe --pipe-timeout 120 <"$2" >/dev/null
    t1=$(date +%s.%N)
    kill -INT "$probe"
    wait "$probe" || true
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["load_secs"]=round(float(sys.argv[3])-float(sys.argv[2]),2); print(json.dumps(d))' \
        "$WORK/probe.json" "$t0" "$t1"
}

out=$RESULTS_DIR/coll-$(date +%Y%m%d-%H%M%S).txt
rows=()
for ty in $TYPES; do
    log "generating $MEMBERS $ty members"
    gen "$ty" "$WORK/$ty.resp"
    for rep in $(seq "$REPEATS"); do
        for srv in redis tether; do
            port=$(free_port)
            start "$srv" "$port"
            log "$ty $srv rep $rep: grow"
            g=$(probed_load "$port" "$WORK/$ty.resp")
            log "$ty $srv rep $rep: overwrite (control)"
            o=$(probed_load "$port" "$WORK/$ty.resp")
            rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$SRV_PID/status")
            kill "$SRV_PID"; wait "$SRV_PID" 2>/dev/null || true; SRV_PID=
            rows+=("$(python3 -c 'import json,sys; g=json.loads(sys.argv[1]); o=json.loads(sys.argv[2]);
f=lambda d: "%7.3f %7.3f %7.2f %4d %6.2f" % (d["p99"], d["p999"], d["max"], d["stalls"], d["load_secs"])
print("%-5s %-7s %3s | %s | %s | %8s" % (sys.argv[3], sys.argv[4], sys.argv[5], f(g), f(o), sys.argv[6]))' "$g" "$o" "$ty" "$srv" "$rep" "$rss")")
        done
    done
done
{
    echo "one collection growing: tether vs redis-server — perf/coll_growth.sh — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "uname:   $(uname -a)"
    echo "nproc:   $(nproc)"
    echo "cpu:     $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
    echo "redis:   $("$REDIS_BIN" --version)"
    echo "tether:  git $(git_rev); bin $TETHER_BIN"
    echo "runs:    $MEMBERS members into one key per type, REPEATS=$REPEATS, fresh server per run, alternating redis/tether"
    echo "servers: taskset -c $SERVER_CPUS; clients (redis-cli --pipe, PING probe): taskset -c $CLIENT_CPUS"
    echo
    echo "                  |            grow (probe ms)            |        overwrite control (probe ms)   |"
    echo "type  server  rep |     p99   p99.9     max  >5ms  load s |     p99   p99.9     max  >5ms  load s |  RSS MB"
    printf '%s\n' "${rows[@]}"
    echo
    echo ">5ms = probes slower than 5 ms; load s = seconds the pipe took; RSS at the end."
} | tee "$out"
log "report: $out"

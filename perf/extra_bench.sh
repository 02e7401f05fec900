#!/usr/bin/env bash
# perf/extra_bench.sh — commands redis-benchmark's default suite leaves out
# (bitmaps, HyperLogLog, SORT, Lua scripts), tether against stock
# redis-server.
#
# Both servers pinned to core 0 (tether --shards 1), redis-benchmark on core 1,
# -c 50, 100 000 keys (`bm:NNNNNNNNNNNN`, redis-benchmark's __rand_int__: it
# cannot randomise an offset, whose leading zeros Redis refuses), alternating
# redis / tether for every command, REPEATS times. Both get the same preload:
# `sortme`, a list of 100 numbers, `hll{t}` / `hll2{t}`, two dense
# HyperLogLogs, and the EVALSHA's script. Prints the median rps and ops per server CPU-second of each,
# and tether/redis, and writes the table to perf/results/extra-<date>.txt.
# Asserts nothing.
#
#   bash perf/extra_bench.sh                 # ~2 minutes
#   REPEATS=5 P=1 bash perf/extra_bench.sh   # -P 1
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TETHER_BIN:-target/release/tether}
[[ -x $BIN ]] || cargo build --release --bin tether
REPEATS=${REPEATS:-3}; P=${P:-16}; N=${N:-400000}
RESULTS_DIR=${RESULTS_DIR:-perf/results}
CMDS=(
    "SETBIT bm:__rand_int__ 100 1"
    "GETBIT bm:__rand_int__ 100"
    "BITCOUNT bm:__rand_int__"
    "BITPOS bm:__rand_int__ 1"
    "BITFIELD bm:__rand_int__ INCRBY u8 #3 1"
    "PFADD hll{t} __rand_int__"
    "PFCOUNT hll{t}"
    "PFCOUNT hll{t} hll2{t}"
    "SORT sortme LIMIT 0 10"
    "EVAL return(redis.call('incr',KEYS[1])) 1 ev:__rand_int__"
    "EVALSHA a79a73d4efb6d4d8861290b54f6770d6422c2144 1 ev:__rand_int__"
)
TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(free_port); TP=$(free_port)
taskset -c 0 redis-server --port "$RP" --save "" --appendonly no >/dev/null 2>&1 &
RPID=$!
taskset -c 0 "$BIN" --port "$TP" --shards 1 --save "" >/dev/null 2>&1 &
TPID=$!
trap 'kill $RPID $TPID 2>/dev/null || true' EXIT
for p in "$RP" "$TP"; do
    for _ in $(seq 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
for p in "$RP" "$TP"; do
    # shellcheck disable=SC2046
    redis-cli -p "$p" rpush sortme $(seq 100 -1 1) >/dev/null
    redis-cli -p "$p" script load "return(redis.call('incr',KEYS[1]))" >/dev/null
    for k in 'hll{t}' 'hll2{t}'; do
        # shellcheck disable=SC2046
        redis-cli -p "$p" pfadd "$k" $(seq -f "$k-%g" 1 20000) >/dev/null
    done
done
RAW=$(mktemp)
one() { # server port pid cmd
    local c0 c1 out rps
    c0=$(cpu "$3")
    # shellcheck disable=SC2086
    out=$(taskset -c 1 redis-benchmark -p "$2" -c 50 -n "$N" -P "$P" -r 100000 -q $4 2>&1 \
        | tr '\r' '\n' | grep "requests per second" | tail -1)
    c1=$(cpu "$3")
    rps=$(sed -E 's/.*: ([0-9.]+) requests per second.*/\1/' <<<"$out")
    echo "$1|$4|$rps|$(awk -v n="$N" -v d=$((c1 - c0)) -v t="$TCK" 'BEGIN{printf "%d", d ? n*t/d : 0}')" >>"$RAW"
}
for _ in $(seq "$REPEATS"); do
    for c in "${CMDS[@]}"; do
        one redis "$RP" "$RPID" "$c"
        one tether "$TP" "$TPID" "$c"
    done
done
mkdir -p "$RESULTS_DIR"
REPORT=$RESULTS_DIR/extra-$(date -u +%Y%m%d-%H%M%S).txt
{
    echo "commands outside the default suite: tether vs redis-server — perf/extra_bench.sh — $(date -u '+%F %T') UTC"
    echo "uname:  $(uname -srm); nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo "redis:  $(redis-server --version | cut -d' ' -f3); tether git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "runs:   -c 50 -P $P -n $N -r 100000, $REPEATS alternating repeats, medians; server on core 0, client on core 1"
    echo
    python3 - "$RAW" <<'PY'
import sys, statistics as st
rows = [l.rstrip("\n").split("|") for l in open(sys.argv[1]) if l.strip()]
cmds = list(dict.fromkeys(r[1] for r in rows))
med = lambda s, c, i: st.median(float(r[i]) for r in rows if r[0] == s and r[1] == c)
print(f"{'command':44} {'redis rps':>11} {'tether rps':>11} {'redis op/cpu':>13} {'tether op/cpu':>13} {'t/r op/cpu':>10}")
for c in cmds:
    rr, tr, ro, to = med("redis", c, 2), med("tether", c, 2), med("redis", c, 3), med("tether", c, 3)
    print(f"{c:44} {rr:11.0f} {tr:11.0f} {ro:13.0f} {to:13.0f} {to / ro:9.2f}x")
print("\nraw runs (server|command|rps|ops per CPU-s):")
for r in rows:
    print("  " + "|".join(r))
PY
} | tee "$REPORT"
rm -f "$RAW"
echo "report: $REPORT"

#!/usr/bin/env bash
# perf/mem_bench.sh — memory per key and hash-table growth stalls: tether vs
# stock redis-server, same machine, same run.
#
# A benchmark, not a test: it asserts nothing. Every run gets a fresh server;
# runs alternate redis, tether, redis, tether ...; the table shows medians and
# tether/redis ratios. Two parts:
#
#   1. memory: KEYS_MEM keys `SET key:NNNNNNN <16-byte value>` (key:0000000 ..)
#      loaded through `redis-cli --pipe` from a RESP file generated once.
#      Server RSS (VmRSS from /proc/PID/status) before and after the load, the
#      growth per key, VmHWM, and INFO memory used_memory (tether's is its RSS).
#   2. growth: the keyspace grows from 0 to KEYS_GROWTH keys the same way while
#      perf/mem_probe.py probe runs a closed-loop latency probe against the
#      same server (one connection, `GET key:0000000` one at a time,
#      back-to-back, perf_counter_ns per request; started 0.5 s before the
#      load, stopped when it ends). Probe count, p50, p99, p99.9, max and the
#      probes over 5 ms, and the load's seconds. Redis rehashes its dict
#      incrementally; a table that grows all at once shows up as a max of many
#      ms (the largest stalls are listed with when they happened). Controls
#      (GROWTH_CONTROL=1), same server: the probe idle for IDLE_SECS before
#      the load, and during the same load repeated once the keys exist
#      (overwrites, no growth): a stall in both is not the table growing.
#
# Servers on SERVER_CPUS (core 0); redis-cli --pipe and the probe on
# CLIENT_CPUS (core 1, shared by the two: the probe's figures include that).
#
# Usage:  bash perf/mem_bench.sh           (~4 min with the defaults here)
# Env (defaults in brackets):
#   TETHER_BIN        tether binary [target/release/tether]; never built here
#   REDIS_BIN         stock server [redis-server]
#   KEYS_MEM          part 1 keys [1000000]
#   KEYS_GROWTH       part 2 keys [5000000]
#   VALUE_SIZE        value bytes [16]
#   TTL               0 = plain SET; N = SET ... EX N, so every key also
#                     enters the TTL index, which must grow without a
#                     stall too [0]
#   REPEATS           part 1 runs per server [3]
#   GROWTH_REPEATS    part 2 runs per server [1]
#   PROBE_CMD         get | ping [get]  (GET key:0000000 or PING)
#   STALL_MS          a probe slower than this counts as a stall [5]
#   PIPE_TIMEOUT      redis-cli --pipe-timeout, s [120]
#   GROWTH_CONTROL    1 = part 2 also probes, on the same server, IDLE_SECS
#                     idle before the growth load and the same load again
#                     after it (overwrites: no table growth) [1]; 0 = off
#   IDLE_SECS         [1]
#   SERVER_CPUS       taskset list for the servers [0]
#   CLIENT_CPUS       taskset list for redis-cli and the probe [1]
#   EXTRA_TETHER_ARGS, EXTRA_REDIS_ARGS   appended to each server's command line
#   RESULTS_DIR       [perf/results]
#   SKIP_MEM=1        skip part 1;   SKIP_GROWTH=1   skip part 2
#   KEEP_WORK=1       keep the temp dir (server logs, RESP files, raw records)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HELPER=$ROOT/perf/mem_probe.py

TETHER_BIN=${TETHER_BIN:-$ROOT/target/release/tether}
REDIS_BIN=${REDIS_BIN:-redis-server}
KEYS_MEM=${KEYS_MEM:-1000000}
KEYS_GROWTH=${KEYS_GROWTH:-5000000}
VALUE_SIZE=${VALUE_SIZE:-16}
TTL=${TTL:-0}
REPEATS=${REPEATS:-3}
GROWTH_REPEATS=${GROWTH_REPEATS:-1}
PROBE_CMD=${PROBE_CMD:-get}
STALL_MS=${STALL_MS:-5}
PIPE_TIMEOUT=${PIPE_TIMEOUT:-120}
GROWTH_CONTROL=${GROWTH_CONTROL:-1}
IDLE_SECS=${IDLE_SECS:-1}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
EXTRA_TETHER_ARGS=${EXTRA_TETHER_ARGS:-}
EXTRA_REDIS_ARGS=${EXTRA_REDIS_ARGS:-}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/perf/results}
SKIP_MEM=${SKIP_MEM:-0}
SKIP_GROWTH=${SKIP_GROWTH:-0}
KEEP_WORK=${KEEP_WORK:-0}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tether-mem.XXXXXX")
RECORDS=$WORK/records.jsonl
: >"$RECORDS"
declare -A PID PORT            # process name -> pid / port (servers and the probe)
SERVERS=(redis tether)         # redis first: the baseline
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log() { printf '[mem] %s\n' "$*" >&2; }
die() { printf '[mem] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"

cleanup() {
    local s
    for s in "${!PID[@]}"; do kill "${PID[$s]}" 2>/dev/null || true; done
    for s in "${!PID[@]}"; do wait "${PID[$s]}" 2>/dev/null || true; done
    if [[ $KEEP_WORK == 1 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

check_tools() {
    need "$REDIS_BIN" redis-server
    need redis-cli redis-tools
    need taskset util-linux
    need python3 python3
    [[ -f $HELPER ]] || die "$HELPER missing"
    [[ -x $TETHER_BIN ]] ||
        die "tether binary '$TETHER_BIN' missing or not executable; build it first (cargo build --release) or set TETHER_BIN — this script never builds"
    [[ $PROBE_CMD == get || $PROBE_CMD == ping ]] || die "PROBE_CMD must be get or ping"
}

# ---------------------------------------------------------------------------
# processes (as perf/repl_bench.sh)

# server_cmd KIND DIR: the server's command line (no --port) into CMD.
# EXTRA_*_ARGS are word-split on purpose (several options in one variable).
server_cmd() {
    local kind=$1 dir=$2 extra
    case $kind in
    redis)
        read -r -a extra <<<"$EXTRA_REDIS_ARGS"
        CMD=("$REDIS_BIN" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --dir "$dir"
             --logfile "" "${extra[@]}") ;;
    tether)
        read -r -a extra <<<"$EXTRA_TETHER_ARGS"
        CMD=("$TETHER_BIN" --bind 127.0.0.1 --shards 1 --save "" --dir "$dir" "${extra[@]}") ;;
    esac
}

# start NAME KIND: a fresh server on a free port, pinned to SERVER_CPUS; waits
# for PONG, retries on port races. taskset execs the server, so $! is its pid.
start() {
    local name=$1 kind=$2 attempt i port
    printf -- '----- start %s (%s) -----\n' "$kind" "$(date -u +%T.%N)" >>"$WORK/$name.log"
    mkdir -p "$WORK/$name-dir"
    server_cmd "$kind" "$WORK/$name-dir"
    for attempt in 1 2 3; do
        port=$(free_port)
        taskset -c "$SERVER_CPUS" "${CMD[@]}" --port "$port" >>"$WORK/$name.log" 2>&1 </dev/null &
        PID[$name]=$!
        PORT[$name]=$port
        for i in $(seq 1 100); do
            alive "$name" || break
            if [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]; then
                return
            fi
            sleep 0.1
        done
        if alive "$name"; then
            tail -n 30 "$WORK/$name.log" >&2 || true
            die "$name did not answer PING on port $port within 10 s (log above)"
        fi
        wait "${PID[$name]}" 2>/dev/null || true
        unset "PID[$name]"
        log "$name exited during start-up on port $port (attempt $attempt)"
    done
    tail -n 30 "$WORK/$name.log" >&2 || true
    die "$name failed to start (log above)"
}

stop() {
    local name=$1
    [[ -n ${PID[$name]:-} ]] || return 0
    kill "${PID[$name]}" 2>/dev/null || true
    wait "${PID[$name]}" 2>/dev/null || true
    unset "PID[$name]"
    rm -rf "$WORK/$name-dir"
}

# status_kb PID FIELD: VmRSS / VmHWM in kB from /proc/PID/status (NA if gone)
status_kb() {
    [[ -r /proc/$1/status ]] || { echo NA; return; }
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

dbsize() { redis-cli -h 127.0.0.1 -p "$1" dbsize 2>/dev/null || echo NA; }

info_memory() {   # info_memory PORT FIELD
    local v
    v=$(redis-cli -h 127.0.0.1 -p "$1" info memory 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p")
    echo "${v:-NA}"
}

mb() { [[ $1 == NA || -z $1 ]] && { echo NA; return; }; awk -v k="$1" -v d="${2:-1024}" 'BEGIN { printf "%.2f", k / d }'; }

# pipe_load PORT FILE: redis-cli --pipe on the client cores. Sets LOAD_T0,
# LOAD_T1 (wall ns), LOAD_ERRORS, LOAD_REPLIES, LOAD_NOTE.
pipe_load() {
    local port=$1 file=$2 out rc=0
    LOAD_NOTE=""
    LOAD_T0=$(date +%s%N)
    # in the background and waited for, so a TERM's trap runs (and cleans up) at once
    taskset -c "$CLIENT_CPUS" redis-cli -h 127.0.0.1 -p "$port" --pipe --pipe-timeout "$PIPE_TIMEOUT" \
        <"$file" >"$WORK/pipe.out" 2>&1 &
    PID[pipe]=$!
    wait "${PID[pipe]}" || rc=$?
    LOAD_T1=$(date +%s%N)
    unset "PID[pipe]"
    out=$(<"$WORK/pipe.out")
    LOAD_ERRORS=$(sed -n 's/.*errors: \([0-9]*\), replies: \([0-9]*\).*/\1/p' <<<"$out" | tail -n1)
    LOAD_REPLIES=$(sed -n 's/.*errors: \([0-9]*\), replies: \([0-9]*\).*/\2/p' <<<"$out" | tail -n1)
    : "${LOAD_ERRORS:=NA}" "${LOAD_REPLIES:=NA}"
    if ((rc != 0)); then
        LOAD_NOTE+="redis-cli --pipe rc $rc: $(tr '\n"' ' \047' <<<"$out" | tail -c 200); "
    fi
    [[ $LOAD_ERRORS == 0 ]] || LOAD_NOTE+="pipe errors $LOAD_ERRORS; "
}

gen_resp() {   # gen_resp KEYS FILE
    log "generating $1 SET commands into $(basename "$2")"
    python3 "$HELPER" gen --keys "$1" --size "$VALUE_SIZE" --ex "$TTL" --out "$2"
}

# ---------------------------------------------------------------------------
# 1. memory

mem_run() {
    local kind=$1 rep=$2 name=mem-$1 pid port
    start "$name" "$kind"
    pid=${PID[$name]}; port=${PORT[$name]}
    sleep 0.5                         # let start-up allocations settle
    local before after hwm um n secs note=""
    before=$(status_kb "$pid" VmRSS)
    pipe_load "$port" "$WORK/mem.resp"
    after=$(status_kb "$pid" VmRSS)
    hwm=$(status_kb "$pid" VmHWM)
    um=$(info_memory "$port" used_memory)
    n=$(dbsize "$port")
    alive "$name" || note+="server died; "
    [[ $n == "$KEYS_MEM" ]] || note+="dbsize $n != $KEYS_MEM; "
    note+=$LOAD_NOTE
    secs=$(awk -v a="$LOAD_T0" -v b="$LOAD_T1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    local delta=NA bpk=NA
    if [[ $before != NA && $after != NA ]]; then
        delta=$(mb $((after - before)))
        bpk=$(awk -v d=$((after - before)) -v n="$KEYS_MEM" 'BEGIN { printf "%.1f", d * 1024 / n }')
    fi
    python3 "$HELPER" merge - part=mem server="$kind" rep="$rep" keys="$KEYS_MEM" value_size="$VALUE_SIZE" \
        rss_before_mb="$(mb "$before")" rss_after_mb="$(mb "$after")" rss_delta_mb="$delta" \
        bytes_per_key="$bpk" hwm_mb="$(mb "$hwm")" mem_allocator="$(info_memory "$port" mem_allocator)" \
        used_memory_mb="$(mb "$um" 1048576)" dbsize="$n" load_secs="$secs" \
        pipe_errors="$LOAD_ERRORS" pipe_replies="$LOAD_REPLIES" note="$note" >>"$RECORDS"
    log "mem    $(printf '%-6s' "$kind") rep $rep  rss $(mb "$before") -> $(mb "$after") MB ($bpk B/key)  hwm $(mb "$hwm") MB  used_memory $(mb "$um" 1048576) MB  dbsize $n  load ${secs} s${note:+  NOTE: $note}"
    stop "$name"
}

part_mem() {
    gen_resp "$KEYS_MEM" "$WORK/mem.resp"
    log "part 1: memory, $KEYS_MEM keys x $VALUE_SIZE B, $REPEATS run(s) per server"
    local rep kind
    for rep in $(seq 1 "$REPEATS"); do
        for kind in "${SERVERS[@]}"; do mem_run "$kind" "$rep"; done
    done
    rm -f "$WORK/mem.resp"
}

# ---------------------------------------------------------------------------
# 2. growth stall

# probe_phase NAME KIND REP PHASE: a closed-loop probe against server NAME,
# started 0.5 s before a redis-cli --pipe load of growth.resp and stopped when
# it ends (PHASE grow / overwrite), or for IDLE_SECS without load (idle); one
# record. grow: a fresh, empty server (its table grows 0 -> KEYS_GROWTH);
# overwrite: the same load again into the full server (no growth: control).
probe_phase() {
    local name=$1 kind=$2 rep=$3 phase=$4 port=${PORT[$1]} pid=${PID[$1]}
    local probe_out=$WORK/probe.json probe_rc=0 note="" n after secs=null
    rm -f "$probe_out"
    local maxs=()
    [[ $phase == idle ]] && maxs=(--max-secs "$IDLE_SECS")
    taskset -c "$CLIENT_CPUS" python3 "$HELPER" probe --port "$port" --cmd "$PROBE_CMD" \
        --timeout 30 --stall-ms "$STALL_MS" "${maxs[@]}" >"$probe_out" 2>"$WORK/probe.err" &
    PID[probe]=$!
    LOAD_T0=null LOAD_T1=null LOAD_ERRORS=null LOAD_REPLIES=null LOAD_NOTE=""
    if [[ $phase != idle ]]; then
        sleep 0.5
        pipe_load "$port" "$WORK/growth.resp"
        kill -TERM "${PID[probe]}" 2>/dev/null || true
        secs=$(awk -v a="$LOAD_T0" -v b="$LOAD_T1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    fi
    wait "${PID[probe]}" 2>/dev/null || probe_rc=$?
    unset "PID[probe]"
    n=$(dbsize "$port")
    after=$(status_kb "$pid" VmRSS)
    alive "$name" || note+="server died; "
    [[ $phase == idle || $n == "$KEYS_GROWTH" ]] || note+="dbsize $n != $KEYS_GROWTH; "
    note+=$LOAD_NOTE
    if [[ ! -s $probe_out ]]; then
        note+="probe printed nothing (rc $probe_rc): $(head -c 200 "$WORK/probe.err" | tr '\n"' ' \047'); "
        echo '{}' >"$probe_out"
    fi
    python3 "$HELPER" merge "$probe_out" part=growth phase="$phase" server="$kind" rep="$rep" \
        keys="$KEYS_GROWTH" value_size="$VALUE_SIZE" load_secs="$secs" load_t0_ns="$LOAD_T0" \
        load_t1_ns="$LOAD_T1" rss_after_mb="$(mb "$after")" dbsize="$n" pipe_errors="$LOAD_ERRORS" \
        pipe_replies="$LOAD_REPLIES" loadavg="$(cut -d' ' -f1 /proc/loadavg)" note="$note" |
        tee -a "$RECORDS" | python3 -c 'import json, sys
r = json.loads(sys.stdin.read())
print("[mem] %-9s %-6s rep %s  load %s s  probes %s  p50/p99/p99.9/max %s/%s/%s/%s ms  > %g ms: %s  dbsize %s%s" % (
    r["phase"], r["server"], r["rep"], "-" if r["load_secs"] is None else r["load_secs"], r.get("probes"), r.get("p50"), r.get("p99"),
    r.get("p999"), r.get("max"), r.get("stall_ms") or 0, r.get("stalls"), r.get("dbsize"),
    ("  NOTE: " + r["note"]) if r.get("note") else ""), file=sys.stderr)'
}

growth_run() {
    local kind=$1 rep=$2 name=grow-$1
    start "$name" "$kind"
    [[ $GROWTH_CONTROL == 1 ]] && probe_phase "$name" "$kind" "$rep" idle
    probe_phase "$name" "$kind" "$rep" grow
    [[ $GROWTH_CONTROL == 1 ]] && probe_phase "$name" "$kind" "$rep" overwrite
    stop "$name"
}

part_growth() {
    gen_resp "$KEYS_GROWTH" "$WORK/growth.resp"
    local ctl=""
    [[ $GROWTH_CONTROL == 1 ]] && ctl=" (+ idle and overwrite controls)"
    log "part 2: growth 0 -> $KEYS_GROWTH keys with a closed-loop $PROBE_CMD probe, $GROWTH_REPEATS run(s) per server$ctl"
    local rep kind
    for rep in $(seq 1 "$GROWTH_REPEATS"); do
        for kind in "${SERVERS[@]}"; do growth_run "$kind" "$rep"; done
    done
    rm -f "$WORK/growth.resp"
}

# ---------------------------------------------------------------------------
# report

header() {
    echo "memory and growth stalls: tether vs redis-server — perf/mem_bench.sh — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "uname:   $(uname -a)"
    echo "nproc:   $(nproc)"
    echo "cpu:     $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
    echo "redis:   $("$REDIS_BIN" --version | head -n1)"
    echo "tether:  git $(git_rev); bin $TETHER_BIN"
    echo "servers: taskset -c $SERVER_CPUS; tether --shards 1 --save \"\"${EXTRA_TETHER_ARGS:+ $EXTRA_TETHER_ARGS}; redis-server --save \"\" --appendonly no${EXTRA_REDIS_ARGS:+ $EXTRA_REDIS_ARGS}"
    echo "clients: taskset -c $CLIENT_CPUS redis-cli --pipe --pipe-timeout $PIPE_TIMEOUT and perf/mem_probe.py probe ($PROBE_CMD, timeout 30 s)"
    echo "runs:    memory: $( [[ $SKIP_MEM == 1 ]] && echo skipped || echo "$KEYS_MEM keys, REPEATS=$REPEATS")," \
         "growth: $( [[ $SKIP_GROWTH == 1 ]] && echo skipped || echo "$KEYS_GROWTH keys, GROWTH_REPEATS=$GROWTH_REPEATS, controls $GROWTH_CONTROL");" \
         "value $VALUE_SIZE B$( [[ $TTL != 0 ]] && echo ", SET ... EX $TTL"); fresh server per run, alternating redis/tether"
    echo "mm:      THP $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo '?'); overcommit_memory $(cat /proc/sys/vm/overcommit_memory 2>/dev/null || echo '?'); MB = 2^20 bytes"
    echo "load:    $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end (1/5/15 min); run took $(( $(date +%s) - T_START )) s"
    echo
}

main() {
    check_tools
    mkdir -p "$RESULTS_DIR"
    [[ $SKIP_MEM == 1 ]] || part_mem
    [[ $SKIP_GROWTH == 1 ]] || part_growth
    local out table
    out=$RESULTS_DIR/mem-$(date +%Y%m%d-%H%M%S).txt
    table=$(python3 "$HELPER" report "$RECORDS")
    {
        header
        echo "$table"
        echo
        echo "raw records (JSON lines):"
        cat "$RECORDS"
    } >"$out"
    echo
    header
    echo "$table"
    echo
    echo "written: ${out#"$ROOT"/}"
}

main "$@"

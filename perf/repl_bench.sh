#!/usr/bin/env bash
# perf/repl_bench.sh — replication cost, lag and full-sync time: stock
# redis-server master vs tether master, each followed by a stock
# redis-server replica, in the same run.
#
# A benchmark, not a test: it asserts nothing. Runs alternate between the
# masters (redis, tether[, tether2]) for every cell, the tables show medians
# over REPEATS and ratios against stock Redis. Three parts:
#
#   1. throughput: redis-benchmark -t set -P 16 -c 50 -r KEYSPACE -n N against
#      a fresh master with no replica vs one stock replica attached. Master on
#      MASTER_CPUS (core 0); replica and client on CLIENT_CPUS (core 1).
#      rps, p99, master CPU-s (utime+stime from /proc/PID/stat, as
#      perf/compare.sh), ops per master CPU-second, replica CPU-s; and the
#      with/without ratio per server.
#   2. lag: a master+replica pair per server; while SET load runs (max:
#      redis-benchmark as in 1; half: perf/repl_probe.py's rate-limited client
#      at HALF_RATE, by default half the slower server's with-replica rps from
#      part 1, the same rate for every server; idle: no load for LAG_SECS),
#      perf/repl_probe.py lag samples master_repl_offset vs slave_repl_offset
#      every 5 ms (bytes behind) and writes a probe HSET every 10 ms; the
#      replica's keyspace event for it (notify-keyspace-events Kh, set on
#      the replica) times when the replica applied it (push ms, no polling;
#      stock and tether replicas both notify); it also polls
#      for it with HGET every 1 ms (probe ms: + up to 1 ms of polling), and
#      pipelines WAIT 1 1000 behind it (ms until the replica's ACK came
#      back: the replication round trip); tether's INFO slave0 lag_ms too.
#   3. full sync: a master holding KEYS keys (key:%012d, VALUE_SIZE bytes,
#      loaded through redis-cli --pipe), a fresh stock replica started with
#      --replicaof; secs from its start until master_link_status:up,
#      master_sync_in_progress:0 and DBSIZE == KEYS. Meanwhile a closed-loop
#      GET client on the master measures its latency, beside an idle baseline.
#      Both masters run repl-diskless-sync yes, repl-diskless-sync-delay 0.
#
# Usage:  bash perf/repl_bench.sh              (~3.5 min with the defaults here)
# Env (defaults in brackets):
#   TETHER_BIN       tether binary [/work/target-bench/release/tether if present,
#                    else target/release/tether; built if missing]
#   REDIS_BIN        stock server, masters and replicas [redis-server]
#   SHARDS           tether --shards values, one server each ["1"]; e.g. "1 2"
#                    (2 shards run on MASTER2_CPUS and share core 1 with the
#                    replica and client)
#   MASTER_CPUS      taskset list for the masters [0]
#   MASTER2_CPUS     taskset list for a 2+-shard tether [0,1]
#   CLIENT_CPUS      taskset list for replicas, redis-benchmark, probes [1]
#   REPEATS          runs per cell and server [3]
#   PARTS            which parts to run ["1 2 3"]
#   N                redis-benchmark -n for parts 1 and 2 [1000000]
#   CLIENTS          -c [50]
#   PIPELINE         -P [16]
#   KEYSPACE         -r [100000]
#   HALF_RATE        part 2 "half" load, SET/s [half of the slower with-replica
#                    median from part 1; 100000 without part 1]
#   LAG_SECS         duration of the idle and half-load runs [3]
#   LOADS            part 2 load levels ["idle max half"]
#   KEYS             part 3 dataset size [1000000]
#   VALUE_SIZE       part 3 value bytes [16]
#   REPLICAS         stock = every master gets a stock redis-server replica;
#                    same = each master a replica of its own kind (tether
#                    master, tether replica with the same --shards) [stock]
#   LAT_CPUS         taskset list for part 3's GET latency client
#                    [CLIENT_CPUS]; the master's core (0) keeps the
#                    replica's load off the measurement
#   SYNC_LATENCY     1 = GET latency on the master during the sync + idle
#                    baseline of BASELINE_SECS [1]; 0 = off
#   BASELINE_SECS    [1]
#   SYNC_TIMEOUT     give up on one sync after this many seconds [120]
#   EXTRA_TETHER_ARGS, EXTRA_REDIS_ARGS   appended to each master's command line
#   RESULTS_DIR      [perf/results]
#   WARMUP           1 = one unrecorded part-1 run per server first [1]
#   KEEP_WORK=1      keep the temp dir (server logs, raw records)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HELPER=$ROOT/perf/repl_probe.py

if [[ -z ${TETHER_BIN:-} ]]; then
    TETHER_BIN=$ROOT/target/release/tether
    [[ -x /work/target-bench/release/tether ]] && TETHER_BIN=/work/target-bench/release/tether
fi
REDIS_BIN=${REDIS_BIN:-redis-server}
SHARDS=${SHARDS:-1}
MASTER_CPUS=${MASTER_CPUS:-0}
MASTER2_CPUS=${MASTER2_CPUS:-0,1}
CLIENT_CPUS=${CLIENT_CPUS:-1}
REPEATS=${REPEATS:-3}
PARTS=${PARTS:-1 2 3}
N=${N:-1000000}
CLIENTS=${CLIENTS:-50}
PIPELINE=${PIPELINE:-16}
KEYSPACE=${KEYSPACE:-100000}
HALF_RATE=${HALF_RATE:-}
LAG_SECS=${LAG_SECS:-3}
LOADS=${LOADS:-idle max half}
KEYS=${KEYS:-1000000}
VALUE_SIZE=${VALUE_SIZE:-16}
SYNC_LATENCY=${SYNC_LATENCY:-1}
REPLICAS=${REPLICAS:-stock}
LAT_CPUS=${LAT_CPUS:-$CLIENT_CPUS}
BASELINE_SECS=${BASELINE_SECS:-1}
SYNC_TIMEOUT=${SYNC_TIMEOUT:-120}
EXTRA_TETHER_ARGS=${EXTRA_TETHER_ARGS:-}
EXTRA_REDIS_ARGS=${EXTRA_REDIS_ARGS:-}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/perf/results}
KEEP_WORK=${KEEP_WORK:-0}
WARMUP=${WARMUP:-1}

CLK_TCK=$(getconf CLK_TCK)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tether-repl.XXXXXX")
RECORDS=$WORK/records.jsonl
: >"$RECORDS"
declare -A PID PORT            # process name -> pid / port (servers and helpers)
CMD=()                         # the command line launch() starts
SERVERS=(redis)                # master kinds, redis first (the baseline)
for s in $SHARDS; do
    if [[ $s == 1 ]]; then SERVERS+=(tether); else SERVERS+=("tether$s"); fi
done
T_START=$(date +%s)

log() { printf '[repl] %s\n' "$*" >&2; }
die() { printf '[repl] ERROR: %s\n' "$*" >&2; exit 1; }
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
    need redis-benchmark redis-tools
    need redis-cli redis-tools
    need taskset util-linux
    need python3 python3
    [[ -f $HELPER ]] || die "$HELPER missing"
    if [[ ! -x "$TETHER_BIN" ]]; then
        [[ "$TETHER_BIN" == "$ROOT/target/release/tether" ]] || die "TETHER_BIN=$TETHER_BIN is not executable"
        log "building tether (cargo build --release)"
        (cd "$ROOT" && cargo build --release --bin tether) >&2
        [[ -x "$TETHER_BIN" ]] || die "build did not produce $TETHER_BIN"
    fi
}

# ---------------------------------------------------------------------------
# processes

cpu_ticks() {
    local stat
    [[ -r /proc/$1/stat ]] || { echo 0; return; }   # gone: the caller notes it
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    awk '{ print $12 + $13 }' <<<"$stat"
}

# master_cmd KIND DIR: the master's command line (no --port) into CMD.
# EXTRA_*_ARGS are word-split on purpose (several options in one variable).
master_cmd() {
    local kind=$1 dir=$2 extra
    case $kind in
    redis)
        read -r -a extra <<<"$EXTRA_REDIS_ARGS"
        CMD=("$REDIS_BIN" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --dir "$dir"
             --logfile "" --repl-diskless-sync yes --repl-diskless-sync-delay 0 "${extra[@]}") ;;
    tether*)
        local shards=${kind#tether}; [[ -z $shards ]] && shards=1
        read -r -a extra <<<"$EXTRA_TETHER_ARGS"
        CMD=("$TETHER_BIN" --bind 127.0.0.1 --shards "$shards" --save "" --dir "$dir"
             --repl-diskless-sync yes --repl-diskless-sync-delay 0 "${extra[@]}") ;;
    esac
}

# replica_cmd MASTER_PORT DIR KIND: the command line of a replica of a KIND
# master into CMD: stock redis-server, or with REPLICAS=same a replica of
# the master's own kind.
replica_cmd() {
    local kind=${3:-redis}
    if [[ $REPLICAS == same && $kind == tether* ]]; then
        local shards=${kind#tether}; [[ -z $shards ]] && shards=1
        CMD=("$TETHER_BIN" --bind 127.0.0.1 --shards "$shards" --save "" --dir "$2"
             --replicaof "127.0.0.1 $1")
    else
        CMD=("$REDIS_BIN" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --dir "$2"
             --logfile "" --replicaof 127.0.0.1 "$1")
    fi
}

master_cpus() {
    case $1 in
    redis | tether) echo "$MASTER_CPUS" ;;
    *) echo "$MASTER2_CPUS" ;;
    esac
}

# launch NAME CPUS: start CMD on a free port (appended), don't wait. A simple
# command in the background is exec'd by the forked shell, and taskset execs
# the server, so $! is the server's own pid (for /proc/PID/stat and kill).
launch() {
    local name=$1 cpus=$2 port
    port=$(free_port)
    mkdir -p "$WORK/$name-dir"
    taskset -c "$cpus" "${CMD[@]}" --port "$port" >>"$WORK/$name.log" 2>&1 </dev/null &
    PID[$name]=$!
    PORT[$name]=$port
}

# start NAME CPUS: launch CMD and wait for PONG; retries on port races.
start() {
    local name=$1 cpus=$2 attempt i
    for attempt in 1 2 3; do
        launch "$name" "$cpus"
        for i in $(seq 1 100); do
            alive "$name" || break
            if [[ $(redis-cli -h 127.0.0.1 -p "${PORT[$name]}" ping 2>/dev/null) == PONG ]]; then
                return
            fi
            sleep 0.1
        done
        if alive "$name"; then
            tail -n 30 "$WORK/$name.log" >&2 || true
            die "$name did not answer PING on port ${PORT[$name]} within 10 s (log above)"
        fi
        wait "${PID[$name]}" 2>/dev/null || true
        unset "PID[$name]"
        log "$name exited during start-up on port ${PORT[$name]} (attempt $attempt)"
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
    # each process gets a fresh dir next time (no stale RDB from a replica)
    rm -rf "$WORK/$name-dir"
}

# Logs are appended per name over the whole run; tag each start for reading.
mark_log() { printf -- '----- %s (%s) -----\n' "$2" "$(date -u +%T.%N)" >>"$WORK/$1.log"; }

start_master() {
    local kind=$1 name=$2
    mark_log "$name" "start master $kind"
    master_cmd "$kind" "$WORK/$name-dir"
    start "$name" "$(master_cpus "$kind")"
}

# start_replica NAME MASTER_PORT KIND: start a replica of a KIND master and
# wait until synced (empty dataset)
start_replica() {
    local name=$1 mport=$2 kind=$3 out
    mark_log "$name" "start replica of $mport"
    replica_cmd "$mport" "$WORK/$name-dir" "$kind"
    start "$name" "$CLIENT_CPUS"
    out=$(python3 "$HELPER" syncwait --replica "${PORT[$name]}" --keys "$(dbsize "$mport")" \
          --t0-ns "$(date +%s%N)" --timeout 30)
    grep -q '"status": "ok"' <<<"$out" || log "$name: replica of $mport not in sync after 30 s: $out"
}

dbsize() { redis-cli -h 127.0.0.1 -p "$1" dbsize 2>/dev/null || echo NA; }

info_field() {   # info_field PORT FIELD
    redis-cli -h 127.0.0.1 -p "$1" info replication 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

# fill PORT COUNT SIZE: SET key:%012d for i < COUNT (redis-benchmark's -r key
# names), SIZE-byte values, through redis-cli --pipe on the client cores.
fill() {
    local port=$1 n=$2 d=$3 out
    out=$(awk -v n="$n" -v d="$d" 'BEGIN {
            v = sprintf("%" d "s", ""); gsub(/ /, "x", v)
            for (i = 0; i < n; i++) {
                k = sprintf("key:%012d", i)
                printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, d, v
            }
        }' | taskset -c "$CLIENT_CPUS" redis-cli -h 127.0.0.1 -p "$port" --pipe 2>&1) ||
        die "filling port $port failed: $out"
}

# ---------------------------------------------------------------------------
# 1. throughput with and without a replica

bench_desc() { echo "redis-benchmark -t set -P $PIPELINE -c $CLIENTS -r $KEYSPACE -n $N"; }

# part1_run KIND MODE REP [warmup]: a fresh master, preloaded with the
# KEYSPACE keys so every measured SET overwrites (as perf/compare.sh), then
# optionally a replica (synced before the clock starts), then the load.
part1_run() {
    local kind=$1 mode=$2 rep=$3 warm=${4:-} m=p1-$1 r=p1-$1-replica
    start_master "$kind" "$m"
    fill "${PORT[$m]}" "$KEYSPACE" 3
    [[ $mode == 1 ]] && start_replica "$r" "${PORT[$m]}" "$kind"
    local t0 t1 rt0=NA rt1=NA out rc=0 note=""
    t0=$(cpu_ticks "${PID[$m]}")
    [[ $mode == 1 ]] && rt0=$(cpu_ticks "${PID[$r]}")
    out=$(taskset -c "$CLIENT_CPUS" redis-benchmark -h 127.0.0.1 -p "${PORT[$m]}" -t set \
          -P "$PIPELINE" -c "$CLIENTS" -r "$KEYSPACE" -n "$N" --csv 2>"$WORK/bench.err") || rc=$?
    t1=$(cpu_ticks "${PID[$m]}")
    [[ $mode == 1 ]] && rt1=$(cpu_ticks "${PID[$r]}")
    alive "$m" || note+="master died; "
    local rps p99
    read -r rps p99 < <(printf '%s\n' "$out" | awk -F'","' '$1 == "\"SET" { print $2, $7 }') || true
    if ((rc != 0)) || [[ -z ${rps:-} ]]; then
        note+="redis-benchmark failed (rc $rc): $(head -c 200 "$WORK/bench.err" | tr '\n"' ' \047'); "
        rps=null; p99=null
    fi
    if [[ $mode == 1 ]]; then
        # After the load: does the replica catch up and hold the same keys?
        local i mo ro
        for i in $(seq 1 100); do
            mo=$(info_field "${PORT[$m]}" master_repl_offset)
            ro=$(info_field "${PORT[$r]}" slave_repl_offset)
            [[ -n $mo && $mo == "$ro" ]] && break
            sleep 0.1
        done
        [[ $mo == "$ro" ]] || note+="replica offset $ro != master $mo 10 s after the run; "
        local md rd
        md=$(dbsize "${PORT[$m]}"); rd=$(dbsize "${PORT[$r]}")
        [[ $md == "$rd" ]] || note+="dbsize master $md replica $rd; "
        [[ $(info_field "${PORT[$r]}" master_link_status) == up ]] || note+="replica link not up after the run; "
    fi
    if [[ -n $warm ]]; then
        log "1 $kind warm-up run (not recorded): rps $rps"
        stop "$m"
        return
    fi
    awk -v s="$kind" -v mode="$mode" -v rep="$rep" -v rps="$rps" -v p99="$p99" \
        -v ticks=$((t1 - t0)) -v rt0="$rt0" -v rt1="$rt1" -v hz="$CLK_TCK" -v n="$N" \
        -v note="$note" 'BEGIN {
        cpu = ticks / hz
        opc = (cpu > 0 && rps != "null") ? sprintf("%.0f", n / cpu) : "null"
        rcpu = (rt0 == "NA") ? "null" : sprintf("%.2f", (rt1 - rt0) / hz)
        printf "{\"part\": 1, \"server\": \"%s\", \"replica\": \"%s\", \"rep\": %d, \"rps\": %s, \"p99\": %s, \"cpu\": %.2f, \"opc\": %s, \"rcpu\": %s%s}\n",
            s, mode == 1 ? "1" : "none", rep, rps, p99, cpu, opc, rcpu,
            note == "" ? "" : ", \"note\": \"" note "\""
    }' | tee -a "$RECORDS" | python3 -c 'import json,sys
r = json.loads(sys.stdin.read())
print("[repl] 1 %-8s replica %-4s rep %d  rps %-10s p99 %-7s cpu %5.2f s  ops/CPU-s %-8s rep cpu %s %s" % (
    r["server"], r["replica"], r["rep"], r["rps"], r["p99"], r["cpu"], r["opc"], r["rcpu"], r.get("note", "")),
    file=sys.stderr)'
    stop "$r"
    stop "$m"
}

part1() {
    log "part 1: throughput, no replica vs one replica ($(bench_desc))"
    local rep mode kind
    # A fresh VM touches new memory slowly the first time: one unrecorded run
    # per server first, so the first recorded runs aren't penalised.
    if [[ $WARMUP == 1 ]]; then
        for kind in "${SERVERS[@]}"; do part1_run "$kind" none 0 warmup; done
    fi
    for rep in $(seq 1 "$REPEATS"); do
        for mode in none 1; do
            for kind in "${SERVERS[@]}"; do
                part1_run "$kind" "$mode" "$rep"
            done
        done
    done
}

# ---------------------------------------------------------------------------
# 2. lag under load

half_rate() {
    [[ -n $HALF_RATE ]] && { echo "$HALF_RATE"; return; }
    python3 - "$RECORDS" <<'EOF'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in recs:
    if r.get("part") == 1 and r.get("replica") == "1" and r.get("rps"):
        by.setdefault(r["server"], []).append(r["rps"])
print(int(min(statistics.median(v) for v in by.values()) / 2) if by else 100000)
EOF
}

part2_run() {
    local kind=$1 load=$2 rep=$3 rate=$4 m=p2-$1 r=p2-$1-replica
    alive "$m" || die "$m died (see $WORK/$m.log)"
    alive "$r" || die "$r died (see $WORK/$r.log)"
    local lagout=$WORK/lag.out
    taskset -c "$CLIENT_CPUS" python3 "$HELPER" lag --master "${PORT[$m]}" --replica "${PORT[$r]}" \
        --tag part=2 --tag server="$kind" --tag load="$load" --tag rep="$rep" >"$lagout" 2>"$WORK/lag.err" &
    PID[lag]=$!
    sleep 0.3
    local wrate=null lerr=0 out rc=0
    if [[ $load == idle ]]; then
        sleep "$LAG_SECS"
        wrate=0
    elif [[ $load == max ]]; then
        out=$(taskset -c "$CLIENT_CPUS" redis-benchmark -h 127.0.0.1 -p "${PORT[$m]}" -t set \
              -P "$PIPELINE" -c "$CLIENTS" -r "$KEYSPACE" -n "$N" --csv 2>"$WORK/bench.err") || rc=$?
        wrate=$(printf '%s\n' "$out" | awk -F'","' '$1 == "\"SET" { print $2 }')
        [[ -n $wrate ]] || { log "redis-benchmark failed (rc $rc): $(head -c 200 "$WORK/bench.err")"; wrate=null; }
    else
        out=$(taskset -c "$CLIENT_CPUS" python3 "$HELPER" load --port "${PORT[$m]}" --rate "$rate" \
              --secs "$LAG_SECS" --keyspace "$KEYSPACE") || rc=$?
        wrate=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["rate"])' "$out" 2>/dev/null || echo null)
        lerr=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["errors"])' "$out" 2>/dev/null || echo 0)
    fi
    sleep 0.1
    kill -TERM "${PID[lag]}" 2>/dev/null || true
    wait "${PID[lag]}" 2>/dev/null || true
    unset "PID[lag]"
    if [[ ! -s $lagout ]]; then
        log "lag probe printed nothing: $(head -c 300 "$WORK/lag.err")"
        return
    fi
    python3 - "$lagout" "$wrate" "$lerr" >>"$RECORDS" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read())
r["wrate"] = None if sys.argv[2] in ("null", "") else float(sys.argv[2])
r["load_errors"] = int(sys.argv[3] or 0)
print(json.dumps(r))
print("[repl] 2 %-8s %-4s rep %d  write/s %-9s bytes p50/p99/max %s/%s/%s  push ms p50/p99/max %s/%s/%s  probe ms p50/p99/max %s/%s/%s  ACK ms p50/p99 %s/%s  SET p99 %s  lag_ms p50/max %s/%s  drain %s ms  probes %d unseen %d%s" % (
    r["server"], r["load"], r["rep"], r["wrate"], r["bytes_p50"], r["bytes_p99"], r["bytes_max"],
    r.get("push_p50"), r.get("push_p99"), r.get("push_max"),
    r["ms_p50"], r["ms_p99"], r["ms_max"], r["ack_p50"], r["ack_p99"], r["set_p99"], r["lagms_p50"], r["lagms_max"], r["drain_ms"],
    r["probes"], r["unseen"], "  errors: " + "; ".join(r["errors"]) if r["errors"] else ""), file=sys.stderr)
EOF
}

part2() {
    local rate kind rep load
    rate=$(half_rate)
    log "part 2: lag; max = $(bench_desc), half = $rate SET/s for $LAG_SECS s"
    for kind in "${SERVERS[@]}"; do
        start_master "$kind" "p2-$kind"
        fill "${PORT[p2-$kind]}" "$KEYSPACE" 3
        start_replica "p2-$kind-replica" "${PORT[p2-$kind]}" "$kind"
    done
    for rep in $(seq 1 "$REPEATS"); do
        for load in $LOADS; do
            for kind in "${SERVERS[@]}"; do
                part2_run "$kind" "$load" "$rep" "$rate"
            done
        done
    done
    for kind in "${SERVERS[@]}"; do
        local md rd
        md=$(dbsize "${PORT[p2-$kind]}"); rd=$(dbsize "${PORT[p2-$kind-replica]}")
        [[ $md == "$rd" ]] || log "part 2 $kind: dbsize master $md replica $rd at the end"
        stop "p2-$kind-replica"
        stop "p2-$kind"
    done
    HALF_USED=$rate
}

# ---------------------------------------------------------------------------
# 3. full sync time

sync_desc() {
    local how="stock replica loads via disk (repl-diskless-load disabled)"
    [[ $REPLICAS == same ]] && how="redis master: $how; tether master: tether replica"
    echo "$KEYS keys x $VALUE_SIZE B; master diskless, delay 0; $how;" \
         "GET latency: one closed-loop client on core $LAT_CPUS, in sync vs $BASELINE_SECS s idle just before"
}

part3() {
    local kind rep
    log "part 3: full sync of $(sync_desc)"
    for kind in "${SERVERS[@]}"; do
        start_master "$kind" "p3-$kind"
        fill "${PORT[p3-$kind]}" "$KEYS" "$VALUE_SIZE"
        local n; n=$(dbsize "${PORT[p3-$kind]}")
        log "p3-$kind: dbsize $n, used_memory $(redis-cli -p "${PORT[p3-$kind]}" info memory 2>/dev/null | tr -d '\r' | sed -n 's/^used_memory_human://p')"
        [[ $n == "$KEYS" ]] || log "p3-$kind: expected $KEYS keys, master has $n"
    done
    for rep in $(seq 1 "$REPEATS"); do
        for kind in "${SERVERS[@]}"; do
            local m=p3-$kind r=p3-$kind-replica mport out t0 lat=()
            mport=${PORT[$m]}
            alive "$m" || die "$m died (see $WORK/$m.log)"
            if [[ $SYNC_LATENCY == 1 ]]; then
                taskset -c "$LAT_CPUS" python3 "$HELPER" latency --port "$mport" --secs "$BASELINE_SECS" \
                    --tag part=3 --tag server="$kind" --tag rep="$rep" >>"$RECORDS"
                lat=(--lat-port "$mport")
            fi
            mark_log "$r" "fresh replica of $mport (rep $rep)"
            t0=$(date +%s%N)
            replica_cmd "$mport" "$WORK/$r-dir" "$kind"
            launch "$r" "$CLIENT_CPUS"
            out=$(taskset -c "$LAT_CPUS" python3 "$HELPER" syncwait --replica "${PORT[$r]}" \
                  --keys "$KEYS" --t0-ns "$t0" --timeout "$SYNC_TIMEOUT" "${lat[@]}" \
                  --tag part=3 --tag server="$kind" --tag rep="$rep")
            local note=""
            alive "$r" || note+="replica exited; "
            alive "$m" || note+="master died; "
            [[ -n $note ]] && out=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["note"]=sys.argv[2]; print(json.dumps(r))' "$out" "$note")
            echo "$out" >>"$RECORDS"
            python3 -c 'import json,sys; r=json.loads(sys.argv[1])
print("[repl] 3 %-8s rep %d  %s in %s s (link up %s, loading seen %s)  GET p99/max during %s/%s ms  %s" % (
    r["server"], r["rep"], r["status"], r["secs"], r.get("t_link_up"), r.get("t_loading"),
    r.get("get_p99"), r.get("get_max"), r.get("note", "")), file=sys.stderr)' "$out"
            stop "$r"
            sleep 0.3      # let the master notice the replica is gone
        done
    done
    for kind in "${SERVERS[@]}"; do stop "p3-$kind"; done
}

# ---------------------------------------------------------------------------
# report

header() {
    local replicas="stock replica"
    [[ $REPLICAS == same ]] && replicas="replica of the master's kind"
    echo "replication: stock redis-server master vs tether master, $replicas — perf/repl_bench.sh — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "uname:    $(uname -a)"
    echo "nproc:    $(nproc)"
    echo "cpu:      $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
    echo "redis:    $("$REDIS_BIN" --version | head -n1)"
    echo "tether:   git $(git_rev); bin $TETHER_BIN"
    echo "masters:  ${SERVERS[*]}; taskset -c $MASTER_CPUS (multi-shard: $MASTER2_CPUS); --save \"\" --repl-diskless-sync yes --repl-diskless-sync-delay 0${EXTRA_TETHER_ARGS:+; tether +$EXTRA_TETHER_ARGS}${EXTRA_REDIS_ARGS:+; redis +$EXTRA_REDIS_ARGS}"
    if [[ $REPLICAS == same ]]; then
        echo "replicas: each master's own kind (REPLICAS=same), taskset -c $CLIENT_CPUS (with the clients and probes)"
    else
        echo "replicas: stock redis-server --save \"\" --replicaof ..., taskset -c $CLIENT_CPUS (with the clients and probes)"
    fi
    echo "runs:     REPEATS=$REPEATS, alternating servers per cell; parts: $PARTS; half load ${HALF_USED:-n/a} SET/s"
    echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, at end); run took $(( $(date +%s) - T_START )) s"
    echo
}

# Redis start-up/shutdown chatter at warning level, not worth a note.
REDIS_NOISE='Redis is starting|Redis version=|Configuration loaded|Server initialized|WARNING Memory overcommit|WARNING: The TCP backlog|Transparent Huge Pages|Diskless rdb transfer, done reading from pipe|SIGTERM|User requested shutdown|ready to exit|bye bye'

# log_notes: what the logs say that a clean run wouldn't. Stock replicas:
# warnings and anything about errors, lost links or timeouts, and the number
# of full syncs against the number of starts (more = it reconnected). Redis
# masters: the same, minus the "Connection with replica lost" our own stops
# cause. tether: WARN/ERROR lines and its full-resync count.
log_notes() {
    echo "log notes (whole run):"
    local f name lines starts syncs
    for f in "$WORK"/*.log; do
        [[ -e $f ]] || continue
        name=$(basename "$f" .log)
        starts=$(grep -c '^----- ' "$f" || true)
        if [[ $name == *tether* && $name != *replica ]]; then
            lines=$(grep -E ' (WARN|ERROR) |panick' "$f" || true)
            syncs=$(grep -c 'starting a full resync' "$f" || true)
            printf '  %-20s %d start(s), %d full resync(s) served, %d log lines\n' "$name" "$starts" "$syncs" "$(wc -l <"$f")"
        else
            lines=$(grep -E ' # |[Ee]rror|lost|[Tt]imeout|timed out|[Ff]ailed|[Uu]nable|[Pp]rotocol' "$f" |
                    grep -vE "$REDIS_NOISE" | grep -vE 'Connection with replica .* lost' || true)
            if [[ $name == *replica ]]; then
                syncs=$(grep -c 'Full resync from master' "$f" || true)
                printf '  %-20s %d start(s), %d full sync(s) received\n' "$name" "$starts" "$syncs"
            fi
        fi
        if [[ -n $lines ]]; then
            echo "  $name: $(wc -l <<<"$lines") notable line(s); distinct (digits as N):"
            sed -E 's/^[0-9]+:[A-Z] [0-9]+ [A-Za-z]+ [0-9]+ [0-9:.]+ //; s/^\[[^]]*\] //; s/[0-9]+/N/g' <<<"$lines" |
                awk '!seen[$0]++' | head -n 8 | cut -c1-200 | sed 's/^/      /'
        fi
    done
}

main() {
    check_tools
    mkdir -p "$RESULTS_DIR"
    local p
    for p in $PARTS; do "part$p"; done
    local out; out=$RESULTS_DIR/repl-$(date +%Y%m%d-%H%M%S).txt
    local table
    table=$(DESC1="$(bench_desc), master preloaded with the $KEYSPACE keys" \
            DESC2="idle = no load for $LAG_SECS s; max = $(bench_desc); half = ${HALF_USED:-?} SET/s for $LAG_SECS s over 8 connections" \
            DESC3="$(sync_desc)" python3 "$HELPER" report "$RECORDS")
    local notes; notes=$(log_notes)
    {
        header
        echo "$table"
        echo "$notes"
        echo
        echo "raw records (JSON lines):"
        cat "$RECORDS"
    } >"$out"
    echo
    header
    echo "$table"
    echo "$notes"
    echo
    echo "written: ${out#"$ROOT"/}"
}

main "$@"

#!/usr/bin/env bash
# perf/compare.sh — tether vs stock redis-server, same machine, same run.
#
# A benchmark, not a test: it asserts nothing about speed. It starts stock
# redis-server and tether, each pinned to SERVER_CPUS (default core 0), drives
# both with redis-benchmark pinned to CLIENT_CPUS (default core 1), alternating
# redis, tether, redis, tether ... for every cell of the matrix, and reports
# medians and tether/redis ratios of
#   rps            requests per second               (higher is better)
#   p99            99th percentile latency, ms       (lower is better)
#   ops/CPU-s      requests per server CPU-second    (higher is better)
# ops/CPU-s is the robust figure on a noisy machine: see perf/README.md.
#
# Usage:  bash perf/compare.sh
# Env (defaults in brackets):
#   TETHER_BIN         tether binary [target/release/tether; built if missing]
#   REDIS_BIN          stock server [redis-server]
#   SHARDS             tether --shards [1]
#   EXTRA_TETHER_ARGS  appended to tether's command line []
#   EXTRA_REDIS_ARGS   appended to redis-server's command line []
#   SERVER_CPUS        taskset list for both servers [0]
#   CLIENT_CPUS        taskset list for redis-benchmark [1]
#   REPEATS            runs per cell and server [3]
#   TESTS              comma list of redis-benchmark -t tests [set,get]
#   PIPELINES          -P depths, space separated ["1 16"]
#   CLIENTS            -c [50]
#   VALUE_SIZES        -d sizes, space separated ["3"]  (e.g. "3 100")
#   KEYSPACE           -r and preload size [100000]
#   N                  -n for -P 1 [400000]
#   N_PIPELINED        -n for -P > 1 [8 * N]
#   ALL_TESTS=1        run every test of redis-benchmark's default suite
#                      (each with its own -t, so CPU time is per test)
#   SUBSCRIBE_PATTERN  a redis-cli per server PSUBSCRIBEd to this for the
#                      whole run, e.g. '__key*' with EXTRA_*_ARGS
#                      "--notify-keyspace-events KEA" []
#   RESULTS_DIR        [perf/results]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)

TETHER_BIN=${TETHER_BIN:-$ROOT/target/release/tether}
REDIS_BIN=${REDIS_BIN:-redis-server}
SHARDS=${SHARDS:-1}
EXTRA_TETHER_ARGS=${EXTRA_TETHER_ARGS:-}
EXTRA_REDIS_ARGS=${EXTRA_REDIS_ARGS:-}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
REPEATS=${REPEATS:-3}
TESTS=${TESTS:-set,get}
PIPELINES=${PIPELINES:-1 16}
CLIENTS=${CLIENTS:-50}
VALUE_SIZES=${VALUE_SIZES:-3}
KEYSPACE=${KEYSPACE:-100000}
N=${N:-400000}
N_PIPELINED=${N_PIPELINED:-$((N * 8))}
ALL_TESTS=${ALL_TESTS:-0}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/perf/results}

# redis-benchmark 7.0's default suite, as -t names (one run each).
DEFAULT_SUITE=ping_inline,ping_mbulk,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,lrange_300,lrange_500,lrange_600,mset
[[ "$ALL_TESTS" == 1 ]] && TESTS=$DEFAULT_SUITE

CLK_TCK=$(getconf CLK_TCK)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tether-compare.XXXXXX")
RECORDS=$WORK/records.tsv      # size test pipe server rep rps p99 cpu_s ops_per_cpu
: >"$RECORDS"
declare -A PID PORT            # server name -> pid / port

log() { printf '[compare] %s\n' "$*" >&2; }
die() { printf '[compare] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"

cleanup() {
    local s
    for s in "${SUBPID[@]}"; do
        kill "$s" 2>/dev/null || true
    done
    for s in "${!PID[@]}"; do
        kill "${PID[$s]}" 2>/dev/null || true
    done
    for s in "${!PID[@]}"; do
        wait "${PID[$s]}" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

check_tools() {
    need "$REDIS_BIN" redis-server
    need redis-benchmark redis-tools
    need redis-cli redis-tools
    need taskset util-linux
    need getconf libc-bin
    if [[ ! -x "$TETHER_BIN" ]]; then
        [[ "$TETHER_BIN" == "$ROOT/target/release/tether" ]] || die "TETHER_BIN=$TETHER_BIN is not executable"
        log "building tether (cargo build --release)"
        (cd "$ROOT" && cargo build --release --bin tether) >&2
        [[ -x "$TETHER_BIN" ]] || die "build did not produce $TETHER_BIN"
    fi
}

# cpu_ticks PID -> utime+stime (fields 14, 15 of /proc/PID/stat, all threads)
cpu_ticks() {
    local stat
    stat=$(<"/proc/$1/stat") || die "server pid $1 is gone"
    stat=${stat##*) }          # drop "pid (comm) "; comm may hold spaces
    # now field 1 is stat field 3, so utime/stime are fields 12 and 13
    awk '{ print $12 + $13 }' <<<"$stat"
}

# start_server NAME CMD... : launch `CMD --port FREE` pinned, wait for PONG.
# Retries on another port if the server dies at once (port race with others).
start_server() {
    local name=$1; shift
    local logf=$WORK/$name.log port attempt i
    mkdir -p "$WORK/$name-dir"
    for attempt in 1 2 3; do
        port=$(free_port)
        taskset -c "$SERVER_CPUS" "$@" --port "$port" >"$logf" 2>&1 </dev/null &
        PID[$name]=$!
        PORT[$name]=$port
        for i in $(seq 1 100); do
            kill -0 "${PID[$name]}" 2>/dev/null || break
            if [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]; then
                log "$name up: pid ${PID[$name]} port $port cpus $SERVER_CPUS"
                return
            fi
            sleep 0.1
        done
        if kill -0 "${PID[$name]}" 2>/dev/null; then
            tail -n 30 "$logf" >&2 || true
            die "$name did not answer PING on port $port within 10 s (log above)"
        fi
        wait "${PID[$name]}" 2>/dev/null || true
        unset "PID[$name]"
        log "$name exited during start-up on port $port (attempt $attempt)"
    done
    tail -n 30 "$logf" >&2 || true
    die "$name failed to start (log above)"
}

# EXTRA_*_ARGS are word-split on purpose (several options in one variable).
# shellcheck disable=SC2086
start_servers() {
    start_server redis "$REDIS_BIN" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize no --dir "$WORK/redis-dir" --logfile "" --loglevel warning $EXTRA_REDIS_ARGS
    start_server tether "$TETHER_BIN" --bind 127.0.0.1 --shards "$SHARDS" --save "" \
        --dir "$WORK/tether-dir" --loglevel warning $EXTRA_TETHER_ARGS
}

# SUBSCRIBE_PATTERN: one redis-cli per server PSUBSCRIBEd to it for the
# whole run (pinned with the client), reading and discarding what arrives:
# e.g. '__key*' with notify-keyspace-events on in EXTRA_*_ARGS. The pubsub
# output-buffer limit is lifted on both servers first: redis-cli reads
# slower than a busy server publishes, and would be dropped at 32 MB
# (sooner by the faster server), leaving nobody to publish to.
SUBPID=()
start_subscribers() {
    [[ -n "${SUBSCRIBE_PATTERN:-}" ]] || return 0
    local s
    for s in redis tether; do
        redis-cli -h 127.0.0.1 -p "${PORT[$s]}" config set client-output-buffer-limit \
            "pubsub 0 0 0" >/dev/null || die "$s: CONFIG SET client-output-buffer-limit"
        taskset -c "$CLIENT_CPUS" redis-cli -h 127.0.0.1 -p "${PORT[$s]}" \
            psubscribe "$SUBSCRIBE_PATTERN" >/dev/null 2>&1 </dev/null &
        SUBPID+=($!)
    done
    sleep 0.3
}

check_alive() {
    kill -0 "${PID[$1]}" 2>/dev/null && return
    tail -n 30 "$WORK/$1.log" >&2 || true
    die "$1 died (log above)"
}

# preload SERVER SIZE: SET key:%012d for the whole keyspace (redis-benchmark's
# key names for -r), values of SIZE bytes, through redis-cli --pipe.
preload() {
    local name=$1 size=$2 out
    if ! out=$(awk -v n="$KEYSPACE" -v d="$size" 'BEGIN {
            v = sprintf("%" d "s", ""); gsub(/ /, "x", v)
            for (i = 0; i < n; i++) {
                k = sprintf("key:%012d", i)
                printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, d, v
            }
        }' | redis-cli -h 127.0.0.1 -p "${PORT[$name]}" --pipe 2>&1); then
        log "$name: redis-cli --pipe failed ($out); falling back to redis-benchmark fill"
        taskset -c "$CLIENT_CPUS" redis-benchmark -h 127.0.0.1 -p "${PORT[$name]}" -q \
            -t set -P 16 -c "$CLIENTS" -r "$KEYSPACE" -d "$size" -n $((KEYSPACE * 5)) >/dev/null
    fi
    local dbsize; dbsize=$(redis-cli -h 127.0.0.1 -p "${PORT[$name]}" dbsize 2>/dev/null || echo '?')
    log "$name: preloaded $KEYSPACE keys x ${size} B (dbsize $dbsize)"
}

# bench SERVER SIZE TEST PIPE REP: one redis-benchmark run, one or more records
bench() {
    local name=$1 size=$2 test=$3 pipe=$4 rep=$5
    local n=$N; ((pipe > 1)) && n=$N_PIPELINED
    local pid=${PID[$name]} t0 t1 out rc=0
    check_alive "$name"
    t0=$(cpu_ticks "$pid")
    out=$(taskset -c "$CLIENT_CPUS" redis-benchmark -h 127.0.0.1 -p "${PORT[$name]}" \
            -c "$CLIENTS" -n "$n" -r "$KEYSPACE" -d "$size" -P "$pipe" -t "$test" --csv \
            2>"$WORK/bench.err") || rc=$?
    check_alive "$name"
    t1=$(cpu_ticks "$pid")
    # rows: "name","rps","avg","min","p50","p95","p99","max" (header skipped)
    local rows
    rows=$(printf '%s\n' "$out" | awk -F'","' 'NF >= 8 && $1 != "\"test" {
        gsub(/^"|"$/, "", $1); gsub(/"$/, "", $8); print $1 "\t" $2 "\t" $7 }')
    if ((rc != 0)) || [[ -z "$rows" ]]; then
        log "$name $test -P $pipe -d $size: redis-benchmark failed (rc $rc): $(head -c 300 "$WORK/bench.err")"
        local label=${test^^}; [[ $label == LRANGE_* ]] && label+=+
        printf '%s\t%s\t%s\t%s\t%s\tNA\tNA\tNA\tNA\n' "$size" "$label" "$pipe" "$name" "$rep" >>"$RECORDS"
        return
    fi
    # ops over the run = n per CSV row. An lrange_* run first does an "LPUSH
    # (needed to benchmark LRANGE)" fill of n requests: its CPU can't be told
    # apart, so that row is dropped, its ops counted, and the test marked "+".
    local nrows; nrows=$(wc -l <<<"$rows")
    if grep -q '(needed to benchmark' <<<"$rows"; then
        rows=$(grep -v '(needed to benchmark' <<<"$rows" | sed 's/\t/+\t/')
    fi
    rows=$(sed 's/ ([^)]*)\(+\{0,1\}\)\t/\1\t/' <<<"$rows")   # "MSET (10 keys)" -> "MSET"
    awk -F'\t' -v OFS='\t' -v size="$size" -v pipe="$pipe" -v srv="$name" -v rep="$rep" \
        -v ticks=$((t1 - t0)) -v hz="$CLK_TCK" -v ops=$((n * nrows)) '{
            cpu = ticks / hz
            opc = cpu > 0 ? sprintf("%.0f", ops / cpu) : "NA"
            print size, $1, pipe, srv, rep, $2, $3, sprintf("%.2f", cpu), opc
        }' <<<"$rows" | tee -a "$RECORDS" | awk -F'\t' '{
            printf "[compare]   %-6s d=%-4s P=%-3s rep %s %-28s rps %10s  p99 %7s ms  cpu %6s s  ops/CPU-s %10s\n",
                $4, $1, $3, $5, $2, $6, $7, $8, $9 }' >&2
}

run_matrix() {
    local size test pipe rep server
    local -a tests; IFS=, read -r -a tests <<<"$TESTS"
    for size in $VALUE_SIZES; do
        for server in redis tether; do preload "$server" "$size"; done
        for rep in $(seq 1 "$REPEATS"); do
            for test in "${tests[@]}"; do
                for pipe in $PIPELINES; do
                    for server in redis tether; do
                        bench "$server" "$size" "$test" "$pipe" "$rep"
                    done
                done
            done
        done
    done
}

# report: medians per (size, test, pipe, server) and tether/redis ratios
report() {
    awk -F'\t' '
    function median(key,   n, i, j, t, a) {
        n = cnt[key]; if (n == 0) return "NA"
        for (i = 1; i <= n; i++) a[i] = val[key, i]
        for (i = 2; i <= n; i++) {            # insertion sort, n is tiny
            t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t
        }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function ratio(t, r) { return (t == "NA" || r == "NA" || r == 0) ? "NA" : sprintf("%.2fx", t / r) }
    function num(x, fmt) { return x == "NA" ? "NA" : sprintf(fmt, x) }
    {
        cell = $1 SUBSEP $2 SUBSEP $3
        if (!(cell in seen)) { seen[cell] = 1; order[++ncell] = cell }
        if ($2 ~ /\+$/) plus = 1
        for (m = 6; m <= 9; m++) if ($m != "NA") { k = cell SUBSEP $4 SUBSEP m; val[k, ++cnt[k]] = $m + 0 }
    }
    END {
        fmt = "%-30s %4s %3s | %10s %10s %6s | %7s %7s %6s | %10s %10s %6s\n"
        printf fmt, "test", "-d", "-P", "redis rps", "tether", "ratio", "r p99", "t p99", "ratio", "r ops/CPUs", "t ops/CPUs", "ratio"
        printf "%s\n", "-------------------------------------------------------------------------------------------------------------------"
        for (c = 1; c <= ncell; c++) {
            split(order[c], f, SUBSEP)
            for (m = 6; m <= 9; m++) {
                r[m] = median(order[c] SUBSEP "redis" SUBSEP m)
                t[m] = median(order[c] SUBSEP "tether" SUBSEP m)
            }
            printf fmt, substr(f[2], 1, 30), f[1], f[3],
                num(r[6], "%.0f"), num(t[6], "%.0f"), ratio(t[6], r[6]),
                num(r[7], "%.3f"), num(t[7], "%.3f"), ratio(t[7], r[7]),
                num(r[9], "%.0f"), num(t[9], "%.0f"), ratio(t[9], r[9])
        }
        print ""
        print "medians over repeats; ratio = tether/redis. rps and ops/CPU-s: higher is better; p99 (ms): lower is better."
        if (plus) print "test+ = run included redis-benchmark'"'"'s LPUSH fill: its ops and CPU are in ops/CPU-s."
    }' "$RECORDS"
}

header() {
    echo "tether vs redis-server — perf/compare.sh — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "uname:   $(uname -a)"
    echo "nproc:   $(nproc)"
    echo "cpu:     $(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
    echo "redis:   $("$REDIS_BIN" --version | head -n1)"
    echo "tether:  git $(git_rev); bin $TETHER_BIN"
    echo "servers: taskset -c $SERVER_CPUS; tether --shards $SHARDS --save \"\"${EXTRA_TETHER_ARGS:+ $EXTRA_TETHER_ARGS}; redis-server --save \"\" --appendonly no${EXTRA_REDIS_ARGS:+ $EXTRA_REDIS_ARGS}"
    echo "client:  taskset -c $CLIENT_CPUS redis-benchmark -c $CLIENTS -r $KEYSPACE -n $N (P=1) / $N_PIPELINED (P>1)"
    [[ -z "${SUBSCRIBE_PATTERN:-}" ]] || echo "subscriber: one redis-cli per server, PSUBSCRIBE $SUBSCRIBE_PATTERN, on $CLIENT_CPUS; client-output-buffer-limit pubsub 0 0 0 on both"
    echo "matrix:  tests=$TESTS pipelines=($PIPELINES) sizes=($VALUE_SIZES) repeats=$REPEATS, alternating redis/tether per cell"
    echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, at end)"
    echo
}

main() {
    check_tools
    mkdir -p "$RESULTS_DIR"
    start_servers
    start_subscribers
    run_matrix
    local out; out=$RESULTS_DIR/compare-$(date +%Y%m%d-%H%M%S).txt
    {
        header
        report
        echo
        echo "raw runs (size test pipe server rep rps p99_ms cpu_s ops_per_cpu_s):"
        cat "$RECORDS"
    } >"$out"
    echo
    header
    report
    echo
    echo "written: ${out#"$ROOT"/}"
}

main "$@"

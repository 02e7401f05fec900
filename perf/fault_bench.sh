#!/usr/bin/env bash
# perf/fault_bench.sh — how fast a master/replica pair notices a broken
# replication link and recovers, tether -> tether vs stock redis-server ->
# redis-server, in the same fault lab as tests/fault_lab.rs.
#
# A benchmark, not a test: it asserts nothing. Lab: three network
# namespaces (master, middle box, replica) joined by veth links, the middle
# box forwarding (ip_forward=1) with an nft table whose rules break the link:
#
#   ns fb-<pid>-m           ns fb-<pid>-x (ip_forward=1)          ns fb-<pid>-r
#   master 10.77.0.1:6379 vm==vxm 10.77.0.2 | 10.77.0.5 vxr==vr 10.77.0.6:6379 replica
#
# Scenarios (issue #7), each run REPEATS times per pair, pairs alternating:
#   1   symmetric silent drop (both directions, no RST, no ICMP) while a
#       client keeps writing (INCR at ~500/s); repl-timeout 3.
#   2a  half-open: the middle box answers the master's segments with a TCP
#       reset and drops the replica's silently; tcp-keepalive 0 (and tether's
#       repl-tcp-user-timeout -1: stock Redis has none), so the replica can
#       only notice by the repl-timeout (3 s) heartbeat.
#   2b  the same half-open link, repl-timeout 30 and tcp-keepalive 2: can
#       keepalive notice? (REPLCONF ACKs keep data in flight, so no; the
#       wait is capped at CAP_2B seconds, then the link is healed.)
# Every server: --save "" --repl-diskless-sync yes --repl-diskless-sync-delay 0
# --repl-ping-replica-period 1; tether --shards SHARDS.
#
# Times are measured from the moment `nft` returned: "master" until its INFO
# shows connected_slaves:0, "replica" until master_link_status:down,
# "recovery" from the heal until the replica's link is up and the master
# lists it online (reconnect + resync). INFO is polled every POLL seconds
# with redis-cli through `ip netns exec`, so each figure carries up to
# POLL + ~20 ms of polling error. "resync" is what the master counted
# (sync_partial_ok / sync_full); "data" compares the INCR counter on both
# sides once the replica caught up.
#
# Usage:  bash perf/fault_bench.sh          (~4 min with the defaults; root)
# Env (defaults in brackets):
#   TETHER_BIN   [target/release/tether; built if missing]
#   REDIS_BIN    [redis-server]
#   SHARDS       tether --shards [2]
#   REPEATS      runs per scenario and pair [3]
#   SCENARIOS    ["1 2a 2b"]
#   POLL         INFO poll interval, s [0.1]
#   CAP_2B       give up waiting for 2b's replica after this many s [12]
#   RESULTS_DIR  [perf/results]
#   KEEP_WORK=1  keep the temp dir (server logs, raw records)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if [[ -z ${TETHER_BIN:-} ]]; then
    TETHER_BIN=$ROOT/target/release/tether
fi
REDIS_BIN=${REDIS_BIN:-redis-server}
SHARDS=${SHARDS:-2}
REPEATS=${REPEATS:-3}
SCENARIOS=${SCENARIOS:-1 2a 2b}
POLL=${POLL:-0.1}
CAP_2B=${CAP_2B:-12}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/perf/results}
KEEP_WORK=${KEEP_WORK:-0}
REPL_TIMEOUT=3

M_IP=10.77.0.1 XM_IP=10.77.0.2 XR_IP=10.77.0.5 R_IP=10.77.0.6 PORT=6379
P=fb-$$
NS_M=$P-m NS_X=$P-x NS_R=$P-r
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tether-fault.XXXXXX")
RECORDS=$WORK/records.txt
: >"$RECORDS"
T_START=$(date +%s)
declare -A PID

log() { printf '[fault] %s\n' "$*" >&2; }
die() { printf '[fault] ERROR: %s\n' "$*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found (Debian: apt-get install -y ${2:-$1})"; }

check_tools() {
    [[ $(id -u) -eq 0 ]] || die "run as root: the lab creates network namespaces"
    need ip iproute2
    need nft nftables
    need redis-cli redis-tools
    need "$REDIS_BIN" redis-server
    need awk gawk
    if [[ ! -x "$TETHER_BIN" ]]; then
        [[ "$TETHER_BIN" == "$ROOT/target/release/tether" ]] || die "TETHER_BIN=$TETHER_BIN is not executable"
        log "building tether (cargo build --release)"
        (cd "$ROOT" && cargo build --release --bin tether) >&2
        [[ -x "$TETHER_BIN" ]] || die "build did not produce $TETHER_BIN"
    fi
}

# ---------------------------------------------------------------------------
# the lab

lab_down() {
    local ns p
    for ns in "$NS_M" "$NS_X" "$NS_R"; do
        [[ -e /run/netns/$ns ]] || continue
        # Only what this script started runs in its namespaces.
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
}

cleanup() {
    local rc=$?
    stop_servers
    lab_down
    if [[ $KEEP_WORK == 1 || $rc -ne 0 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lab_up() {
    local ns
    for ns in "$NS_M" "$NS_X" "$NS_R"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    ip link add vm netns "$NS_M" type veth peer name vxm netns "$NS_X"
    ip link add vr netns "$NS_R" type veth peer name vxr netns "$NS_X"
    ip -n "$NS_M" addr add $M_IP/30 dev vm
    ip -n "$NS_X" addr add $XM_IP/30 dev vxm
    ip -n "$NS_X" addr add $XR_IP/30 dev vxr
    ip -n "$NS_R" addr add $R_IP/30 dev vr
    ip -n "$NS_M" link set vm up
    ip -n "$NS_X" link set vxm up
    ip -n "$NS_X" link set vxr up
    ip -n "$NS_R" link set vr up
    ip -n "$NS_M" route add default via $XM_IP
    ip -n "$NS_R" route add default via $XR_IP
    ip netns exec "$NS_X" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
    ip netns exec "$NS_X" nft -f - <<'EOF'
table inet lab {
  chain fw {
    type filter hook forward priority 0; policy accept;
  }
}
EOF
}

break_link() {
    case $1 in
    both)
        ip netns exec "$NS_X" nft -f - <<EOF
add rule inet lab fw ip saddr $M_IP ip daddr $R_IP drop
add rule inet lab fw ip saddr $R_IP ip daddr $M_IP drop
EOF
        ;;
    halfopen)
        ip netns exec "$NS_X" nft -f - <<EOF
add rule inet lab fw ip saddr $M_IP ip daddr $R_IP meta l4proto tcp reject with tcp reset
add rule inet lab fw ip saddr $R_IP ip daddr $M_IP drop
EOF
        ;;
    esac
}

heal() { ip netns exec "$NS_X" nft flush chain inet lab fw; }

# ---------------------------------------------------------------------------
# servers and INFO

m_cli() { ip netns exec "$NS_M" redis-cli -h $M_IP -p $PORT "$@"; }
r_cli() { ip netns exec "$NS_R" redis-cli -h $R_IP -p $PORT "$@"; }

# field NAME: value of NAME: in INFO text on stdin
field() { tr -d '\r' | awk -F: -v k="$1" '$1 == k { print $2; exit }'; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# start ROLE KIND EXTRA...: a server in the role's namespace, logging to WORK
start() {
    local role=$1 kind=$2 ns ip bin common=()
    shift 2
    case $role in
    master) ns=$NS_M ip=$M_IP ;;
    replica) ns=$NS_R ip=$R_IP ;;
    esac
    local dir=$WORK/$role-$kind-$RUN
    mkdir -p "$dir"
    common=(--bind $ip --port $PORT --save "" --dir "$dir" --repl-diskless-sync yes
            --repl-diskless-sync-delay 0 --repl-ping-replica-period 1)
    case $kind in
    tether)
        bin=$TETHER_BIN
        common+=(--shards "$SHARDS")
        [[ $role == replica ]] && common+=(--replicaof "$M_IP $PORT") ;;
    redis)
        bin=$REDIS_BIN
        common+=(--appendonly no --protected-mode no --daemonize no --logfile "")
        [[ $role == replica ]] && common+=(--replicaof $M_IP $PORT) ;;
    esac
    # ip netns exec execs the server in place: $! is its pid.
    RUST_LOG=info ip netns exec "$ns" "$bin" "${common[@]}" "$@" >"$dir/log" 2>&1 &
    PID[$role]=$!
    local i
    for i in $(seq 1 200); do
        if [[ $role == master ]]; then
            [[ $(m_cli PING 2>/dev/null) == PONG ]] && return 0
        else
            [[ $(r_cli PING 2>/dev/null) == PONG ]] && return 0
        fi
        kill -0 "${PID[$role]}" 2>/dev/null || die "$kind $role exited at start-up: $(tail -5 "$dir/log")"
        sleep 0.05
    done
    die "$kind $role did not answer PING"
}

stop_servers() {
    local r
    for r in "${!PID[@]}"; do kill "${PID[$r]}" 2>/dev/null || true; done
    for r in "${!PID[@]}"; do wait "${PID[$r]}" 2>/dev/null || true; done
    PID=()
}

linked() {
    [[ $(r_cli INFO replication | field master_link_status) == up ]] \
        && m_cli INFO replication | tr -d '\r' | grep -q '^slave0:.*state=online'
}

# ---------------------------------------------------------------------------
# one run

# run_one SCENARIO KIND: prints "det_master det_replica recovery resync data"
run_one() {
    local sc=$1 kind=$2 args=() cap cutmode
    args=(--repl-timeout $REPL_TIMEOUT)
    cutmode=both cap=$((REPL_TIMEOUT + 5))
    case $sc in
    1) ;;
    2a)
        cutmode=halfopen
        args+=(--tcp-keepalive 0)
        [[ $kind == tether ]] && args+=(--repl-tcp-user-timeout -1) ;;
    2b)
        cutmode=halfopen cap=$CAP_2B
        args=(--repl-timeout 30 --tcp-keepalive 2) ;;
    esac
    start master "$kind" "${args[@]}"
    start replica "$kind" "${args[@]}"
    local i
    for i in $(seq 1 200); do linked && break; sleep 0.05; done
    linked || die "$kind pair did not link up"

    # ~500 writes/s, never across the middle box.
    ip netns exec "$NS_M" redis-cli -h $M_IP -p $PORT -r 1000000 -i 0.002 INCR counter >/dev/null 2>&1 &
    local writer=$!
    sleep 1
    local st full0 part0
    st=$(m_cli INFO stats)
    full0=$(field sync_full <<<"$st") part0=$(field sync_partial_ok <<<"$st")

    local t0 dm=- dr=- slaves link
    break_link $cutmode
    t0=$(now)
    while :; do
        if [[ $dm == - ]]; then
            slaves=$(m_cli INFO replication | field connected_slaves)
            [[ $slaves == 0 ]] && dm=$(since "$t0")
        fi
        if [[ $dr == - ]]; then
            link=$(r_cli INFO replication | field master_link_status)
            [[ $link == down ]] && dr=$(since "$t0")
        fi
        [[ $dm != - && $dr != - ]] && break
        [[ $(since "$t0" | cut -d. -f1) -ge $cap ]] && break
        sleep "$POLL"
    done
    [[ $dm == - ]] && dm=">$cap"
    [[ $dr == - ]] && dr=">$cap"

    local th rec=-
    heal
    th=$(now)
    while :; do
        linked && { rec=$(since "$th"); break; }
        [[ $(since "$th" | cut -d. -f1) -ge 30 ]] && { rec=">30"; break; }
        sleep "$POLL"
    done
    kill "$writer" 2>/dev/null || true
    wait "$writer" 2>/dev/null || true

    local resync=? full1 part1 data=? mo ro a b
    st=$(m_cli INFO stats)
    full1=$(field sync_full <<<"$st") part1=$(field sync_partial_ok <<<"$st")
    if (( full1 - full0 == 0 && part1 - part0 == 1 )); then resync=partial
    elif (( full1 - full0 == 1 && part1 - part0 == 0 )); then resync=full
    else resync="full+$((full1 - full0))/partial+$((part1 - part0))"; fi
    for i in $(seq 1 100); do
        mo=$(m_cli INFO replication | field master_repl_offset)
        ro=$(r_cli INFO replication | field slave_repl_offset)
        [[ -n $mo && $mo == "$ro" ]] && break
        sleep 0.1
    done
    a=$(m_cli GET counter) b=$(r_cli GET counter)
    if [[ -n $a && $a == "$b" ]]; then data="same($a)"; else data="DIFF($a/$b)"; fi
    stop_servers
    echo "$dm $dr $rec $resync $data"
}

# ---------------------------------------------------------------------------
# report

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# cell SCENARIO KIND COLUMN: "median (min-max)" over numeric runs, or the
# censored count ("3x >12") when some runs hit the cap
cell() {
    local vals cens n
    vals=$(awk -v s="$1" -v k="$2" -v c="$3" '$1 == s && $2 == k { print $(c) }' "$RECORDS")
    cens=$(grep -c '^>' <<<"$vals" || true)
    n=$(grep -c . <<<"$vals" || true)
    if (( cens > 0 )); then
        printf '%s/%s %s' "$cens" "$n" "$(grep '^>' <<<"$vals" | head -1)"
        return
    fi
    local med min max
    med=$(median <<<"$vals")
    min=$(sort -g <<<"$vals" | head -1) max=$(sort -g <<<"$vals" | tail -1)
    printf '%s (%s-%s)' "$med" "$min" "$max"
}

# summary_col SCENARIO KIND COLUMN: "valuexcount ..." (a "(...)" detail dropped)
summary_col() {
    awk -v s="$1" -v k="$2" -v c="$3" '$1 == s && $2 == k { v = $(c); sub(/\(.*\)/, "", v); n[v]++ }
        END { o = ""; for (v in n) o = o (o ? " " : "") v "x" n[v]; print o }' "$RECORDS"
}

report() {
    local sc kind
    printf 'fault lab: detection and recovery, tether -> tether vs redis-server -> redis-server — perf/fault_bench.sh — %s UTC\n' "$(date -u '+%Y-%m-%d %H:%M:%S')"
    printf 'uname:    %s\n' "$(uname -a)"
    printf 'nproc:    %s\n' "$(nproc)"
    printf 'cpu:      %s\n' "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
    printf 'redis:    %s\n' "$("$REDIS_BIN" --version)"
    printf 'tether:   git %s; bin %s; --shards %s\n' "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')" "$TETHER_BIN" "$SHARDS"
    printf 'servers:  --save "" --repl-diskless-sync yes --repl-diskless-sync-delay 0 --repl-ping-replica-period 1 (kernel defaults otherwise)\n'
    printf 'runs:     REPEATS=%s, pairs alternating; INFO polled every %s s via ip netns exec redis-cli; run took %s s\n' \
        "$REPEATS" "$POLL" "$(( $(date +%s) - T_START ))"
    printf 'scenarios: 1 = symmetric silent drop, writes continue, repl-timeout %s\n' "$REPL_TIMEOUT"
    printf '           2a = half-open (master side reset, replica side dropped), keepalive off, heartbeat repl-timeout %s\n' "$REPL_TIMEOUT"
    printf '           2b = half-open, repl-timeout 30, tcp-keepalive 2: keepalive only (capped at %s s)\n' "$CAP_2B"
    printf '\nseconds, median (min-max) over runs; "k/n >X" = k of n runs not detected within X s\n'
    printf '%-4s | %-7s | %-20s | %-20s | %-20s | %-16s | %s\n' scen pair "master detects" "replica detects" "recovery after heal" resync data
    printf -- '-%.0s' $(seq 1 125); printf '\n'
    for sc in $SCENARIOS; do
        for kind in tether redis; do
            printf '%-4s | %-7s | %-20s | %-20s | %-20s | %-16s | %s\n' "$sc" "$kind" \
                "$(cell "$sc" "$kind" 4)" "$(cell "$sc" "$kind" 5)" "$(cell "$sc" "$kind" 6)" \
                "$(summary_col "$sc" "$kind" 7)" "$(summary_col "$sc" "$kind" 8)"
        done
    done
    printf '\nraw runs (scenario pair rep master replica recovery resync data):\n'
    cat "$RECORDS"
}

main() {
    check_tools
    lab_down
    lab_up
    log "lab $P up; tether $TETHER_BIN; scenarios: $SCENARIOS; REPEATS=$REPEATS"
    local rep sc kind res
    RUN=0
    for sc in $SCENARIOS; do
        for rep in $(seq 1 "$REPEATS"); do
            for kind in tether redis; do
                RUN=$((RUN + 1))
                res=$(run_one "$sc" "$kind")
                log "scenario $sc $kind #$rep: master $(cut -d' ' -f1 <<<"$res") s, replica $(cut -d' ' -f2 <<<"$res") s, recovery $(cut -d' ' -f3- <<<"$res")"
                echo "$sc $kind $rep $res" >>"$RECORDS"
            done
        done
    done
    mkdir -p "$RESULTS_DIR"
    local out
    out=$RESULTS_DIR/fault-$(date -u +%Y%m%d-%H%M%S).txt
    report | tee "$out"
    log "saved $out"
}

main "$@"

#!/usr/bin/env bash
# tests/redis_tcl_suite.sh — runs Redis 7.0.15's own tcl test suite against
# tether, as a third-party check of compatibility. Not part of tests/run.sh:
# it downloads Debian bookworm's redis source package, and many of the
# suite's tests need what tether does not implement (DEBUG RELOAD/OBJECT,
# AOF, functions, ACL, streams, ...; see README.md), so it reports rather
# than gates. unit/scripting runs its FUNCTION half first, which fails and
# then waits forever in a readraw loop; run its EVAL half alone from a copy
# with `foreach is_eval {1}` (e.g. tests/unit/scripting_eval.tcl in the
# unpacked tree).
#
#   bash tests/redis_tcl_suite.sh                        # the default units
#   bash tests/redis_tcl_suite.sh unit/type/list integration/replication-2
#
# tether runs in place of src/redis-server (a script that execs it), so the
# harness starts, restarts and kills it like Redis. Tests tagged needs:debug
# are skipped. Each unit's output goes to $OUT/<unit>.txt; the summary lists
# every failed test.
#
# Environment:
#   REDIS_SRC_DIR  where the source is unpacked [/tmp/redis-tcl-suite]
#   TETHER_BIN     the binary [target/release/tether, built if missing]
#   OUT            per-unit output [/tmp/redis-tcl-suite/out]
#   UNIT_TIMEOUT   seconds per unit [600]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC_DIR=${REDIS_SRC_DIR:-/tmp/redis-tcl-suite}
OUT=${OUT:-$SRC_DIR/out}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-600}
VERSION=7.0.15
UNITS=("$@")
if [[ ${#UNITS[@]} -eq 0 ]]; then
    UNITS=(
        unit/type/string unit/bitops unit/bitfield unit/hyperloglog unit/sort
        unit/type/incr
        unit/type/list unit/type/list-2
        unit/type/list-3 unit/type/hash unit/type/set unit/type/zset
        unit/expire unit/keyspace unit/multi unit/pubsub unit/scan
        unit/protocol unit/introspection unit/info-command unit/other
        unit/pause unit/dump unit/querybuf unit/lazyfree
        integration/replication-2 integration/replication-3
        integration/replication-psync integration/block-repl
        integration/psync2-reg integration/psync2-pingoff
        integration/psync2 integration/psync2-master-restart
        integration/replication integration/replication-4
        integration/failover integration/shutdown unit/info
    )
fi

die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

if ! command -v tclsh >/dev/null; then
    [[ $(id -u) -eq 0 ]] || die "tclsh is missing (apt-get install tcl)"
    apt-get install -y tcl </dev/null >/dev/null || die "apt-get install tcl failed"
fi

TREE=$SRC_DIR/redis-$VERSION
if [[ ! -d $TREE/tests ]]; then
    mkdir -p "$SRC_DIR"
    cd "$SRC_DIR"
    # apt-get source needs a deb-src line; add one for the download only.
    src_list=/etc/apt/sources.list.d/tether-redis-src.sources
    [[ $(id -u) -eq 0 ]] || die "fetching the source needs root (or unpack redis-$VERSION into $SRC_DIR)"
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' >"$src_list"
    trap 'rm -f "$src_list"' EXIT
    apt-get update >/dev/null 2>&1 || die "apt-get update failed"
    apt-get source --download-only redis >/dev/null 2>&1 || die "apt-get source redis failed"
    rm -f "$src_list"
    tar xzf "redis_$VERSION.orig.tar.gz"
    [[ -d $TREE/tests ]] || die "no $TREE/tests after unpacking"
fi

TETHER_BIN=${TETHER_BIN:-$ROOT/target/release/tether}
if [[ ! -x $TETHER_BIN ]]; then
    (cd "$ROOT" && cargo build --release --bin tether) || die "build failed"
fi
# The harness starts src/redis-server with a redis.conf; tether reads it.
# Its helpers call the stock tools from src/ too.
mkdir -p "$TREE/src"
printf '#!/bin/bash\nexec %q "$@"\n' "$TETHER_BIN" >"$TREE/src/redis-server"
chmod +x "$TREE/src/redis-server"
for t in redis-cli redis-benchmark redis-check-aof redis-check-rdb; do
    command -v "$t" >/dev/null && ln -sf "$(command -v "$t")" "$TREE/src/$t"
done

mkdir -p "$OUT"
cd "$TREE"
failed=()
for u in "${UNITS[@]}"; do
    f=$OUT/$(echo "$u" | tr / _).txt
    printf '==> %s\n' "$u"
    timeout "$UNIT_TIMEOUT" ./runtest --single "$u" --clients 1 --durable \
        --tags -needs:debug 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >"$f" || true
    grep -q '^\[.*done\]: ' "$f" || failed+=("$u: did not finish (see $f)")
    while IFS= read -r line; do
        failed+=("$u: ${line#\[err\]: }")
    done < <(grep '^\[err\]: ' "$f" | sed 's/ in tests\/.*//' | sort -u)
done
printf '\n%d failed tests or units:\n' "${#failed[@]}"
printf '  %s\n' "${failed[@]}"

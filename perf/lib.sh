# perf/lib.sh — helpers shared by perf/compare.sh, perf/repl_bench.sh and
# perf/mem_bench.sh. Sourced after the script defines log() and die(), ROOT
# (the repository) and, where servers are tracked by name, the PID array.

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found (Debian: apt-get install ${2:-$1})"; }

# A port is taken if anything listens on it (any address) or answers on it.
port_in_use() {
    if command -v ss >/dev/null 2>&1; then
        [[ -n $(ss -Htan "sport = :$1" 2>/dev/null) ]] && return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A free port below Linux's ephemeral range (32768-60999), so outgoing
# sockets don't collide with it.
free_port() {
    local p i
    for i in $(seq 1 200); do
        p=$((10000 + RANDOM % 22000))
        port_in_use "$p" || { echo "$p"; return; }
    done
    die "no free port found"
}

alive() { [[ -n ${PID[$1]:-} ]] && kill -0 "${PID[$1]}" 2>/dev/null; }

git_rev() {
    local rev
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || { echo "unknown (no commit)"; return; }
    [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]] && rev+="-dirty"
    echo "$rev"
}

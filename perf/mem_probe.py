#!/usr/bin/env python3
"""perf/mem_probe.py — helpers for perf/mem_bench.sh.

A benchmark helper, not a test: it measures and prints, it asserts nothing.

  gen     --keys N --out FILE [--size 16] [--ex SECS]
          RESP file of N `SET key:NNNNNNN <value>` commands (key:%07d, wider
          if N > 10^7; the value is --size bytes of "v"), for redis-cli --pipe.
  probe   --port P [--cmd get|ping] [--timeout 30] [--stall-ms 5]
          closed-loop latency probe: one connection, one request at a time,
          back-to-back (`GET key:0000000` or `PING`), each timed with
          time.perf_counter_ns from just before the send to the whole reply.
          Runs until SIGTERM/SIGINT (finishes the request in flight, so the
          longest stall is never cut short) or --max-secs; then prints ONE
          JSON object: count, p50/p99/p99.9/max ms, probes over --stall-ms and
          the largest of them with their wall-clock start (ns). A request
          with no reply within --timeout counts as a sample of --timeout
          seconds (a lower bound) and the probe reconnects; connection errors
          are counted, and the probe reconnects after 10 ms.
  merge   JSON_FILE|- k=v ...
          the JSON object (or {} for "-") with k=v pairs added (numbers as
          numbers); prints it as one line. mem_bench.sh builds its records so.
  report  RECORDS.jsonl
          the tables (medians per server, ratios tether/redis).
"""

import argparse
import array
import json
import signal
import socket
import statistics
import sys
import time


# --------------------------------------------------------------------------
# gen

def cmd_gen(a):
    n, size = a.keys, a.size
    width = max(7, len(str(max(n - 1, 0))))
    value = b"v" * size
    # Fixed-width keys: one template, filled by bytes %-formatting per key.
    klen = 4 + width
    tmpl = (b"*%d\r\n$3\r\nSET\r\n$%d\r\nkey:%%0%dd\r\n$%d\r\n" % (5 if a.ex else 3, klen, width, size)) + value + b"\r\n"
    if a.ex:
        secs = str(a.ex).encode()
        tmpl += b"$2\r\nEX\r\n$%d\r\n%s\r\n" % (len(secs), secs)
    chunk = 100_000
    with open(a.out, "wb", buffering=1 << 22) as fh:
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            fh.write(b"".join([tmpl % i for i in range(lo, hi)]))


# --------------------------------------------------------------------------
# probe

STOP = False


def _on_signal(signum, frame):
    global STOP
    STOP = True


def pct(sorted_xs, p):
    """Nearest-rank percentile of an already sorted sequence; None if empty."""
    n = len(sorted_xs)
    if n == 0:
        return None
    k = max(0, min(n - 1, int(round(p / 100.0 * n + 0.5)) - 1))
    return sorted_xs[k]


def r3(x):
    return None if x is None else round(x, 3)


class Timeout(Exception):
    pass


def read_reply(s, buf):
    """Read exactly one RESP reply (simple/error/integer/bulk; arrays are
    not needed by GET/PING) from socket s; buf holds leftovers. Returns the
    remaining bytes. Raises Timeout / ConnectionError."""
    while True:
        i = buf.find(b"\r\n")
        if i >= 0:
            t = buf[:1]
            if t == b"$":
                n = int(buf[1:i])
                need = i + 2 + (n + 2 if n >= 0 else 0)
                if len(buf) >= need:
                    return buf[need:]
            elif t in (b"+", b"-", b":"):
                return buf[i + 2:]
            else:
                raise ConnectionError("unexpected reply %r" % bytes(buf[:40]))
        try:
            d = s.recv(1 << 16)
        except socket.timeout:
            raise Timeout()
        if not d:
            raise ConnectionError("connection closed by server")
        buf += d


def connect(port, timeout):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def cmd_probe(a):
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if a.cmd == "ping":
        req = b"*1\r\n$4\r\nPING\r\n"
    else:
        req = b"*2\r\n$3\r\nGET\r\n$11\r\nkey:0000000\r\n"
    lat = array.array("q")          # ns per probe
    stalls = []                     # (ns, wall start ns) of probes > stall_ms
    stall_ns = int(a.stall_ms * 1e6)
    timeout_ns = int(a.timeout * 1e9)
    timeouts = 0
    errors = []
    reconnects = 0
    wall0 = time.time_ns()
    pc0 = time.perf_counter_ns()
    t_end = pc0 + int(a.max_secs * 1e9)
    s = None
    buf = b""
    while not STOP:
        if s is None:
            try:
                s = connect(a.port, a.timeout)
                buf = b""
            except OSError as e:
                if len(errors) < 20:
                    errors.append("connect: %s" % e)
                time.sleep(0.01)
                if time.perf_counter_ns() > t_end:
                    break
                continue
        t0 = time.perf_counter_ns()
        try:
            s.sendall(req)
            buf = read_reply(s, buf)
            dt = time.perf_counter_ns() - t0
        except Timeout:
            dt = timeout_ns
            timeouts += 1
            s.close()
            s = None
            reconnects += 1
        except (ConnectionError, OSError, ValueError) as e:
            if len(errors) < 20:
                errors.append(str(e))
            if s is not None:
                s.close()
            s = None
            reconnects += 1
            time.sleep(0.01)
            continue
        lat.append(dt)
        if dt > stall_ns:
            stalls.append((dt, wall0 + (t0 - pc0)))
        if t0 > t_end:
            break
    if s is not None:
        s.close()
    secs = (time.perf_counter_ns() - pc0) / 1e9
    xs = sorted(lat)
    ms = lambda v: None if v is None else v / 1e6
    stalls.sort(reverse=True)
    out = {
        "probe_cmd": a.cmd.upper(),
        "probe_secs": round(secs, 3),
        "probes": len(xs),
        "p50": r3(ms(pct(xs, 50))),
        "p99": r3(ms(pct(xs, 99))),
        "p999": r3(ms(pct(xs, 99.9))),
        "max": r3(ms(xs[-1] if xs else None)),
        "stall_ms": a.stall_ms,
        "stalls": len(stalls),
        "stall_total_ms": r3(sum(d for d, _ in stalls) / 1e6),
        # the largest, as [ms, wall-clock start ns]
        "top_stalls": [[r3(d / 1e6), w] for d, w in stalls[:10]],
        "timeouts": timeouts,
        "reconnects": reconnects,
        "errors": errors,
    }
    print(json.dumps(out), flush=True)


# --------------------------------------------------------------------------
# merge

def parse_val(v):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    if v in ("null", "NA", ""):
        return None
    return v


def cmd_merge(a):
    if a.json == "-":
        obj = {}
    else:
        try:
            with open(a.json) as fh:
                obj = json.loads(fh.read())
        except (OSError, ValueError) as e:
            obj = {"merge_error": "%s: %s" % (a.json, e)}
    for kv in a.kv:
        k, _, v = kv.partition("=")
        obj[k] = parse_val(v)
    print(json.dumps(obj), flush=True)


# --------------------------------------------------------------------------
# report

def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None


def fmt(x, f):
    return "NA" if x is None else f % x


def ratio(t, r):
    return "NA" if t is None or r in (None, 0) else "%.2fx" % (t / r)


def table(title, rows, recs, servers):
    """rows: (label, key, format). One line per row: medians and ratio."""
    out = [title]
    cols = "%-34s" + " %12s" * len(servers) + " %8s"
    heads = list(servers)
    out.append(cols % tuple(["metric"] + heads + ["t/r"]))
    out.append("-" * (34 + 13 * len(servers) + 9))
    for label, key, f in rows:
        vals = {s: med([r.get(key) for r in recs if r["server"] == s]) for s in servers}
        out.append(cols % tuple([label] + [fmt(vals[s], f) for s in servers]
                                + [ratio(vals.get("tether"), vals.get("redis"))]))
    return out


def cmd_report(a):
    recs = [json.loads(l) for l in open(a.records) if l.strip().startswith("{")]
    servers = []
    for r in recs:
        if r.get("server") and r["server"] not in servers:
            servers.append(r["server"])
    lines = []
    mem = [r for r in recs if r.get("part") == "mem"]
    if mem:
        n = mem[0].get("keys")
        nrep = max(len([r for r in mem if r["server"] == s]) for s in servers)
        lines += table(
            "memory: %s keys, SET key:NNNNNNN <%s B>, loaded via redis-cli --pipe into a fresh server; "
            "medians over %d run(s)" % (n, mem[0].get("value_size"), nrep),
            [("rss before load (MB)", "rss_before_mb", "%.1f"),
             ("rss after load (MB)", "rss_after_mb", "%.1f"),
             ("rss growth (MB)", "rss_delta_mb", "%.1f"),
             ("rss growth per key (bytes)", "bytes_per_key", "%.1f"),
             ("peak rss, VmHWM (MB)", "hwm_mb", "%.1f"),
             ("used_memory (MB)", "used_memory_mb", "%.1f"),
             ("load secs", "load_secs", "%.2f")],
            mem, servers)
        alloc = {}
        for r in mem:
            alloc.setdefault(r["server"], r.get("mem_allocator"))
        lines.append("mem_allocator (INFO memory): %s; used_memory is what each server reports "
                     "(tether with libc: its RSS)." % ", ".join("%s %s" % kv for kv in alloc.items()))
        lines.append("")
    allg = [r for r in recs if r.get("part") == "growth"]
    gro = [r for r in allg if r.get("phase", "grow") == "grow"]
    if gro:
        n = gro[0].get("keys")
        sm = gro[0].get("stall_ms") or 5
        nrep = max(len([r for r in gro if r["server"] == s]) for s in servers)
        lines += table(
            "growth: 0 -> %s keys via redis-cli --pipe into a fresh server, closed-loop %s probe meanwhile "
            "(1 conn); medians over %d run(s)" % (n, gro[0].get("probe_cmd", "?"), nrep),
            [("probes", "probes", "%.0f"),
             ("probe p50 (ms)", "p50", "%.3f"),
             ("probe p99 (ms)", "p99", "%.3f"),
             ("probe p99.9 (ms)", "p999", "%.3f"),
             ("probe max (ms)", "max", "%.3f"),
             ("probes > %g ms" % sm, "stalls", "%.0f"),
             ("time in probes > %g ms (ms)" % sm, "stall_total_ms", "%.1f"),
             ("load secs", "load_secs", "%.2f"),
             ("rss after load (MB)", "rss_after_mb", "%.1f")],
            gro, servers)
        lines.append("")
    ctl = [r for r in allg if r.get("phase") in ("idle", "overwrite")]
    if ctl:
        sm = ctl[0].get("stall_ms") or 5
        rows = []
        for ph, what in (("idle", "idle"), ("overwrite", "overwrite")):
            if not any(r.get("phase") == ph for r in ctl):
                continue
            rows += [("%s: probes" % what, ph + ".probes", "%.0f"),
                     ("%s: probe p50 (ms)" % what, ph + ".p50", "%.3f"),
                     ("%s: probe p99 (ms)" % what, ph + ".p99", "%.3f"),
                     ("%s: probe p99.9 (ms)" % what, ph + ".p999", "%.3f"),
                     ("%s: probe max (ms)" % what, ph + ".max", "%.3f"),
                     ("%s: probes > %g ms" % (what, sm), ph + ".stalls", "%.0f")]
            if ph == "overwrite":
                rows.append(("overwrite: load secs", ph + ".load_secs", "%.2f"))
        # flatten phase.key so table() can take medians per server
        flat = []
        for r in ctl:
            flat.append(dict({"server": r["server"]}, **{r["phase"] + "." + k: v for k, v in r.items()}))
        lines += table(
            "controls, same servers as growth: idle = the probe alone before the load; overwrite = the same "
            "load again once the keys exist (no table growth). A stall in these too is not the table growing.",
            rows, flat, servers)
        lines.append("")
    if allg:
        lines.append("largest probe stalls per run (ms @ seconds since the load started; idle: since the probe started):")
        for r in allg:
            t0 = r.get("load_t0_ns") or 0
            tops = ", ".join("%.1f @ %.2f s" % (ms, (w - t0) / 1e9 if t0 else 0.0)
                             for ms, w in (r.get("top_stalls") or [])[:6])
            if not t0 and r.get("top_stalls"):
                tops = ", ".join("%.1f" % ms for ms, w in r["top_stalls"][:6])
            extra = ""
            if r.get("timeouts"):
                extra += "  timeouts %d" % r["timeouts"]
            if r.get("errors"):
                extra += "  errors: %s" % "; ".join(r["errors"][:3])
            if r.get("note"):
                extra += "  NOTE: %s" % r["note"]
            lines.append("  %-9s %-7s rep %s  load %s s  dbsize %s  loadavg %s  %s%s" % (
                r.get("phase", "grow"), r["server"], r.get("rep"),
                "-" if r.get("load_secs") is None else "%.2f" % r["load_secs"], r.get("dbsize"),
                r.get("loadavg"), tops or "(none over %g ms)" % (r.get("stall_ms") or 5), extra))
        lines.append("")
    notes = [r for r in recs if r.get("note") and r.get("part") == "mem"]
    for r in notes:
        lines.append("NOTE mem %s rep %s: %s" % (r["server"], r.get("rep"), r["note"]))
    lines.append("ratio t/r = tether/redis; all rows: lower is better (except probes: a count of completed requests).")
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="sub", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--keys", type=int, required=True)
    g.add_argument("--size", type=int, default=16)
    g.add_argument("--ex", type=int, default=0, help="SET ... EX secs (0: no TTL)")
    g.add_argument("--out", required=True)
    pr = sub.add_parser("probe")
    pr.add_argument("--port", type=int, required=True)
    pr.add_argument("--cmd", choices=("get", "ping"), default="get")
    pr.add_argument("--timeout", type=float, default=30.0)
    pr.add_argument("--stall-ms", type=float, default=5.0)
    pr.add_argument("--max-secs", type=float, default=7200.0)
    m = sub.add_parser("merge")
    m.add_argument("json")
    m.add_argument("kv", nargs="*")
    r = sub.add_parser("report")
    r.add_argument("records")
    a = p.parse_args()
    {"gen": cmd_gen, "probe": cmd_probe, "merge": cmd_merge, "report": cmd_report}[a.sub](a)


if __name__ == "__main__":
    main()

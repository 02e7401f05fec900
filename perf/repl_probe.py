#!/usr/bin/env python3
"""perf/repl_probe.py — sub-millisecond helpers for perf/repl_bench.sh.

A benchmark helper, not a test: it measures and prints, it asserts nothing.
Every measuring subcommand prints ONE JSON object on stdout (plus any
`--tag k=v` pairs), which repl_bench.sh appends to its records; `report`
turns those records into the tables.

  lag       --master P --replica P          until SIGTERM (or --secs):
            * every --info-ms (5): INFO replication on the master, then on
              the replica, over two persistent connections -> lag in bytes =
              master_repl_offset - slave_repl_offset (master asked first, so
              its request's queueing delay falls before the offset is read;
              the replica's answer comes a fraction of a ms later, so the
              lag is understated by at most that much apply progress);
              also the master's `lag_ms=` of slave0 when it has one (tether);
            * every --probe-ms (10): HSET <probe key> v <counter> on the
              master (own connection; write time = just before the send), with
              WAIT 1 1000 pipelined behind it unless --no-wait: the time
              until WAIT answers 1 is the replication round trip (master ->
              replica applies it -> REPLCONF ACK -> master), an exact upper
              bound on the lag that needs no polling (a WAIT answering 0,
              i.e. timing out, is counted as unacked);
            * every --poll-ms (1): HGET <probe key> v on the replica; the
              first time it shows a value >= k, probe k is visible:
              lag_ms = visible - written (includes the master's queueing of
              the probe write; its send->reply time is reported beside it).
              Polling adds up to --poll-ms, so its p99 cannot go below it;
            * push: with notify-keyspace-events Kh set on the replica, a
              SUBSCRIBE to the probe key's keyspace channel there gets one
              "hset" event per probe the moment the replica applies it (a
              replica notifies for its master's writes): lag = event -
              written, no polling. Only hash events are switched on, and the
              load writes strings, so the load sends none. A replica that
              does not notify shows NA;
            on stop: probes stop, polling goes on (<= 5 s) until the last
            probe is seen, then the time for the replica's offset to reach
            the master's offset at stop ("drain").
  load      --port P --rate OPS --secs S    rate-limited SET load (1 ms
            batches over --conns connections, keys key:%012d < --keyspace,
            --size byte values, like redis-benchmark -r/-d); prints the rate
            achieved.
  syncwait  --replica P --keys N --t0-ns T  poll the replica every 5 ms until
            master_link_status:up, master_sync_in_progress:0 and DBSIZE == N;
            secs = done - T (T = wall-clock ns just before the replica was
            started). With --lat-port P: closed-loop GET on that port
            (the master) meanwhile -> latency p50/p99/max.
  latency   --port P --secs S               the same closed-loop GET alone
            (the baseline for syncwait's latency).
  report    RECORDS.jsonl                   the tables.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import sys
import threading
import time


# --------------------------------------------------------------------------
# A minimal RESP2 client: enough for INFO, GET, SET, DBSIZE.

class ReplyError(Exception):
    pass


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port, host="127.0.0.1", timeout=30.0):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def _fill(self):
        d = self.s.recv(1 << 16)
        if not d:
            raise ConnectionError("connection closed by server")
        self.buf += d

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            self._fill()

    def reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise ReplyError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data = bytes(self.buf[:n])
            del self.buf[: n + 2]
            return data
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError("bad reply line %r" % line[:60])

    def cmd(self, *args):
        self.s.sendall(encode(args))
        return self.reply()


def info_dict(raw):
    d = {}
    for line in raw.decode(errors="replace").split("\r\n"):
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            d[k] = v
    return d


def slave0_lag_ms(info):
    """tether's `lag_ms=` in slave0 (stock Redis has none) -> int or None."""
    s0 = info.get("slave0")
    if not s0:
        return None
    for kv in s0.split(","):
        if kv.startswith("lag_ms="):
            try:
                return int(kv[7:])
            except ValueError:
                return None
    return None


def pct(xs, p):
    """Nearest-rank percentile; None for an empty list."""
    if not xs:
        return None
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def r3(x):
    return None if x is None else round(x, 3)


def emit(obj, tags):
    for t in tags or []:
        k, _, v = t.partition("=")
        try:
            obj[k] = int(v)
        except ValueError:
            obj[k] = v
    print(json.dumps(obj, sort_keys=False), flush=True)


def now_ns():
    return time.monotonic_ns()


def sleep_until(t_ns):
    d = t_ns - time.monotonic_ns()
    if d > 0:
        time.sleep(d / 1e9)


# --------------------------------------------------------------------------
# lag

def cmd_lag(a):
    sys.setswitchinterval(0.0002)   # timestamps taken by I/O threads, not GIL hogs
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    key = "__probe:%d:%d" % (os.getpid(), time.time_ns())
    errors = []

    samples = []            # (t_ns, master_off, replica_off, lag_ms_field, link)
    sent = {}               # k -> t_send_ns
    okd = {}                # k -> t_ok_ns
    acked = {}              # k -> t_wait_answered_ns (WAIT said 1)
    unacked = [0]
    seen = {}               # k -> t_visible_ns
    pushed = {}             # k -> t_event_ns (keyspace event on the replica)
    last = {"k": 0}
    writer_done = threading.Event()
    subscribed = threading.Event()
    chan = "__keyspace@0__:" + key

    def info_loop():
        try:
            m, r = Conn(a.master), Conn(a.replica)
            nxt = now_ns()
            while not stop.is_set():
                t = now_ns()
                mi = info_dict(m.cmd("INFO", "replication"))
                ri = info_dict(r.cmd("INFO", "replication"))
                samples.append((t, int(mi.get("master_repl_offset", -1)),
                                int(ri.get("slave_repl_offset", -1)),
                                slave0_lag_ms(mi), ri.get("master_link_status", "?")))
                nxt += a.info_ms * 1_000_000
                if nxt < now_ns():       # fell behind (slow INFO): no burst
                    nxt = now_ns()
                sleep_until(nxt)
            m.close()
            r.close()
        except Exception as e:  # noqa: BLE001 — report, don't crash the run
            errors.append("info: %r" % e)

    def notifier():
        # The probes' keyspace events on the replica, counted in order: the
        # n-th "hset" event is the n-th probe (one event per HSET, applied
        # in stream order).
        r = None
        try:
            r = Conn(a.replica)
            try:
                r.cmd("CONFIG", "SET", "notify-keyspace-events", "Kh")
            except ReplyError as e:
                errors.append("notifier: CONFIG SET notify-keyspace-events: %s" % e)
            r.cmd("SUBSCRIBE", chan)
            subscribed.set()
            n = 0
            deadline = None
            r.s.settimeout(0.2)
            while True:
                if writer_done.is_set():
                    deadline = deadline or now_ns() + 5_000_000_000
                    if n >= last["k"] or now_ns() > deadline:
                        break
                try:
                    msg = r.reply()
                except socket.timeout:
                    continue
                t = now_ns()
                if isinstance(msg, list) and len(msg) == 3 and msg[0] == b"message":
                    n += 1
                    pushed[n] = t
        except Exception as e:  # noqa: BLE001
            errors.append("notifier: %r" % e)
        finally:
            subscribed.set()
            if r is not None:
                r.close()

    def writer():
        try:
            subscribed.wait(2.0)
            m = Conn(a.master)
            k = 0
            nxt = now_ns()
            while not stop.is_set():
                k += 1
                sent[k] = now_ns()
                if a.wait:
                    m.s.sendall(encode(("HSET", key, "v", k)) + encode(("WAIT", "1", "1000")))
                    m.reply()
                    okd[k] = now_ns()
                    if m.reply() == 1:
                        acked[k] = now_ns()
                    else:
                        unacked[0] += 1
                else:
                    m.cmd("HSET", key, "v", k)
                    okd[k] = now_ns()
                last["k"] = k
                nxt += a.probe_ms * 1_000_000
                if nxt < now_ns():
                    nxt = now_ns()
                sleep_until(nxt)
            m.close()
        except Exception as e:  # noqa: BLE001
            errors.append("probe writer: %r" % e)
        finally:
            writer_done.set()

    def poller():
        try:
            r = Conn(a.replica)
            got = 0
            deadline = None
            while True:
                v = r.cmd("HGET", key, "v")
                t = now_ns()
                if v is not None:
                    v = int(v)
                    for j in range(got + 1, v + 1):
                        seen[j] = t
                    got = max(got, v)
                if writer_done.is_set():
                    if deadline is None:
                        deadline = t + 5_000_000_000
                    if got >= last["k"] or t > deadline:
                        break
                time.sleep(a.poll_ms / 1000.0)
            r.close()
        except Exception as e:  # noqa: BLE001
            errors.append("poller: %r" % e)

    threads = [threading.Thread(target=f, daemon=True)
               for f in (info_loop, notifier, writer, poller)]
    for th in threads:
        th.start()
    t_start = time.monotonic()
    while not stop.is_set():
        if a.secs and time.monotonic() - t_start >= a.secs:
            stop.set()
        stop.wait(0.05)
    t_stop = now_ns()
    for th in threads:
        th.join(timeout=15)

    # Drain: how long until the replica's offset reaches the master's at stop.
    drain_ms = None
    final_lag = None
    try:
        m, r = Conn(a.master), Conn(a.replica)
        target = int(info_dict(m.cmd("INFO", "replication"))["master_repl_offset"])
        while True:
            ro = int(info_dict(r.cmd("INFO", "replication")).get("slave_repl_offset", -1))
            if ro >= target:
                drain_ms = (now_ns() - t_stop) / 1e6
                break
            if now_ns() - t_stop > 10_000_000_000:
                final_lag = target - ro
                break
            time.sleep(0.002)
        try:
            m.cmd("DEL", key)
        except ReplyError:
            pass
        m.close()
        r.close()
    except Exception as e:  # noqa: BLE001
        errors.append("drain: %r" % e)

    lag_b = [mo - ro for (_, mo, ro, _, _) in samples if mo >= 0 and ro >= 0]
    neg = sum(1 for x in lag_b if x < 0)
    lag_b = [max(0, x) for x in lag_b]
    lagms_f = [x for (_, _, _, x, _) in samples if x is not None]
    link_down = sum(1 for s in samples if s[4] != "up")
    probe_ms = [(seen[k] - sent[k]) / 1e6 for k in sent if k in seen]
    push_ms = [(pushed[k] - sent[k]) / 1e6 for k in sent if k in pushed]
    set_ms = [(okd[k] - sent[k]) / 1e6 for k in okd]
    ack_ms = [(acked[k] - sent[k]) / 1e6 for k in acked]
    unseen = sum(1 for k in sent if k not in seen)
    rate = None
    if len(samples) >= 2 and samples[-1][0] > samples[0][0]:
        rate = (samples[-1][1] - samples[0][1]) / ((samples[-1][0] - samples[0][0]) / 1e9)
    span = (samples[-1][0] - samples[0][0]) / 1e6 if len(samples) >= 2 else 0
    emit({
        "kind": "lag",
        "samples": len(samples),
        "sample_ms": r3(span / max(1, len(samples) - 1)),
        "bytes_p50": pct(lag_b, 50), "bytes_p99": pct(lag_b, 99),
        "bytes_max": max(lag_b) if lag_b else None, "bytes_neg": neg,
        "probes": len(sent), "unseen": unseen,
        "ms_p50": r3(pct(probe_ms, 50)), "ms_p99": r3(pct(probe_ms, 99)),
        "ms_max": r3(max(probe_ms) if probe_ms else None),
        "push_p50": r3(pct(push_ms, 50)), "push_p99": r3(pct(push_ms, 99)),
        "push_max": r3(max(push_ms) if push_ms else None),
        "push_unseen": (len(sent) - len(push_ms)) if push_ms else None,
        "set_p50": r3(pct(set_ms, 50)), "set_p99": r3(pct(set_ms, 99)),
        "ack_p50": r3(pct(ack_ms, 50)), "ack_p99": r3(pct(ack_ms, 99)),
        "ack_max": r3(max(ack_ms) if ack_ms else None), "unacked": unacked[0] if a.wait else None,
        "lagms_p50": pct(lagms_f, 50), "lagms_p99": pct(lagms_f, 99),
        "lagms_max": max(lagms_f) if lagms_f else None,
        "link_not_up": link_down,
        "stream_Bps": None if rate is None else int(rate),
        "drain_ms": r3(drain_ms), "undrained_bytes": final_lag,
        "errors": errors,
    }, a.tag)


# --------------------------------------------------------------------------
# load

def cmd_load(a):
    import random
    rnd = random.Random(12345)
    val = b"x" * a.size
    n_pre = 1 << 16
    cmds = [encode([b"SET", b"key:%012d" % rnd.randrange(a.keyspace), val]) for _ in range(n_pre)]
    offs = [0]
    for c in cmds:
        offs.append(offs[-1] + len(c))
    blob = memoryview(b"".join(cmds) * 2)        # doubled: a slice never wraps
    conns = [Conn(a.port) for _ in range(a.conns)]
    rcvd = [0] * a.conns
    errs = [0]
    done = threading.Event()

    def reader(i):
        s = conns[i].s
        s.settimeout(1.0)
        while True:
            try:
                d = s.recv(1 << 16)
            except socket.timeout:
                if done.is_set():
                    return
                continue
            except OSError:
                return
            if not d:
                return
            rcvd[i] += len(d)
            if b"-" in d:
                errs[0] += d.count(b"\r\n-") + d.startswith(b"-")

    ths = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(a.conns)]
    for th in ths:
        th.start()
    sent = 0
    pos = 0
    ci = 0
    t0 = time.monotonic()
    tick = a.tick_ms / 1000.0
    nxt = t0
    while True:
        now = time.monotonic()
        el = now - t0
        if el >= a.secs:
            break
        due = int(a.rate * el) - sent
        while due > 0:
            take = min(due, n_pre - pos, 2000)
            conns[ci].s.sendall(blob[offs[pos]:offs[pos + take]])
            ci = (ci + 1) % a.conns
            sent += take
            due -= take
            pos = (pos + take) % n_pre
        nxt += tick
        d = nxt - time.monotonic()
        if d > 0:
            time.sleep(d)
    t_send = time.monotonic() - t0
    # wait for the replies (5 bytes each, "+OK\r\n")
    deadline = time.monotonic() + 10
    while sum(rcvd) < 5 * sent and time.monotonic() < deadline:
        time.sleep(0.002)
    t_all = time.monotonic() - t0
    done.set()
    for c in conns:
        c.close()
    emit({"kind": "load", "target_rate": a.rate, "sent": sent, "replied": sum(rcvd) // 5,
          "errors": errs[0], "send_secs": r3(t_send), "secs": r3(t_all),
          "rate": int(sum(rcvd) // 5 / t_all) if t_all > 0 else None}, a.tag)


# --------------------------------------------------------------------------
# syncwait / latency

def get_latency_loop(port, stop, out, errors):
    try:
        c = Conn(port)
        i = 0
        while not stop.is_set():
            t = now_ns()
            c.cmd("GET", "key:%012d" % (i % 1000))
            out.append((now_ns() - t) / 1e6)
            i += 1
        c.close()
    except Exception as e:  # noqa: BLE001
        errors.append("latency: %r" % e)


def lat_fields(prefix, xs):
    return {prefix + "_n": len(xs), prefix + "_p50": r3(pct(xs, 50)),
            prefix + "_p99": r3(pct(xs, 99)), prefix + "_max": r3(max(xs) if xs else None)}


def cmd_syncwait(a):
    errors = []
    lat = []
    stop = threading.Event()
    th = None
    if a.lat_port:
        th = threading.Thread(target=get_latency_loop, args=(a.lat_port, stop, lat, errors), daemon=True)
        th.start()
    t_end = time.monotonic() + a.timeout
    c = None
    last = {}
    phases = {}
    status = "timeout"
    while time.monotonic() < t_end:
        try:
            if c is None:
                c = Conn(a.replica, timeout=5)
                phases.setdefault("connected", time.time_ns())
            ri = info_dict(c.cmd("INFO", "replication"))
            link = ri.get("master_link_status")
            busy = ri.get("master_sync_in_progress")
            if busy == "1":
                phases.setdefault("sync_started", time.time_ns())
            n = None
            try:
                n = c.cmd("DBSIZE")
            except ReplyError:          # -LOADING while the RDB loads
                phases.setdefault("loading", time.time_ns())
            last = {"link": link, "in_progress": busy, "dbsize": n}
            if link == "up":
                phases.setdefault("link_up", time.time_ns())
            if link == "up" and busy == "0" and n == a.keys:
                status = "ok"
                break
        except (ConnectionError, OSError):
            if c is not None:
                c.close()
            c = None
        except ReplyError as e:
            last = {"error": str(e)}
        time.sleep(0.005)
    t_done = time.time_ns()
    stop.set()
    if th:
        th.join(timeout=5)
    if c is not None:
        c.close()
    out = {"kind": "sync", "status": status, "secs": r3((t_done - a.t0_ns) / 1e9),
           "last": last, "errors": errors}
    for k, v in phases.items():
        out["t_" + k] = r3((v - a.t0_ns) / 1e9)
    if a.lat_port:
        out.update(lat_fields("get", lat))
    emit(out, a.tag)


def cmd_latency(a):
    errors = []
    lat = []
    stop = threading.Event()
    th = threading.Thread(target=get_latency_loop, args=(a.port, stop, lat, errors), daemon=True)
    th.start()
    time.sleep(a.secs)
    stop.set()
    th.join(timeout=5)
    out = {"kind": "latency", "errors": errors}
    out.update(lat_fields("get", lat))
    emit(out, a.tag)


# --------------------------------------------------------------------------
# report

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def mx(xs):
    xs = [x for x in xs if x is not None]
    return max(xs) if xs else None


def f(x, fmt="%.0f"):
    return "NA" if x is None else fmt % x


def ratio(a, b):
    return "NA" if a is None or b in (None, 0) else "%.2fx" % (a / b)


LOADS = ("idle", "max", "half")


def cmd_report(a):
    recs = [json.loads(line) for line in open(a.records) if line.strip().startswith("{")]
    servers = []
    for r in recs:
        if "server" in r and r["server"] not in servers:
            servers.append(r["server"])
    base = servers[0] if servers else "redis"
    out = []
    P = out.append

    # ---- part 1
    r1 = [r for r in recs if r.get("part") == 1]
    if r1:
        P("1. master SET throughput, none vs one replica attached")
        P("   " + os.environ.get("DESC1", ""))
        P("%-9s %-7s | %10s %8s | %9s %11s | %10s | %7s" %
          ("server", "replica", "rps", "p99 ms", "mst CPU-s", "ops/CPU-s", "rep CPU-s", "runs"))
        P("-" * 88)
        m = {}
        for s in servers:
            for mode in ("none", "1"):
                rs = [r for r in r1 if r["server"] == s and r["replica"] == mode]
                if not rs:
                    continue
                ok = [r for r in rs if r.get("rps") is not None]
                m[s, mode] = {k: med([r.get(k) for r in ok])
                              for k in ("rps", "p99", "cpu", "opc", "rcpu")}
                v = m[s, mode]
                P("%-9s %-7s | %10s %8s | %9s %11s | %10s | %d/%d" % (
                    s, mode, f(v["rps"]), f(v["p99"], "%.3f"), f(v["cpu"], "%.2f"),
                    f(v["opc"]), f(v["rcpu"], "%.2f") if mode == "1" else "-", len(ok), len(rs)))
        P("")
        P("%-9s | %-22s %-22s" % ("server", "with/without rps", "with/without ops/CPU-s"))
        for s in servers:
            if (s, "none") in m and (s, "1") in m:
                P("%-9s | %-22s %-22s" % (s, ratio(m[s, "1"]["rps"], m[s, "none"]["rps"]),
                                          ratio(m[s, "1"]["opc"], m[s, "none"]["opc"])))
        for s in servers[1:]:
            for mode in ("none", "1"):
                if (s, mode) in m and (base, mode) in m:
                    P("%s/%s replica=%-4s: rps %s, ops/CPU-s %s" % (
                        s, base, mode, ratio(m[s, mode]["rps"], m[base, mode]["rps"]),
                        ratio(m[s, mode]["opc"], m[base, mode]["opc"])))
        notes = [r for r in r1 if r.get("note")]
        for r in notes:
            P("  note: %s replica=%s rep %s: %s" % (r["server"], r["replica"], r["rep"], r["note"]))
        P("")

    # ---- part 2
    r2 = [r for r in recs if r.get("part") == 2]
    if r2:
        P("2. replication lag under SET load (p50/p99 = median over runs, max = max over runs)")
        P("   " + os.environ.get("DESC2", ""))
        P("%-5s %-9s | %9s %7s | %8s %8s %8s | %7s %7s %7s | %7s %7s %7s | %6s %6s | %7s %7s %7s | %12s | %8s | %s" % (
            "load", "server", "write/s", "MB/s", "B p50", "B p99", "B max",
            "pushp50", "pushp99", "pushmax",
            "ms p50", "ms p99", "ms max", "SETp50", "SETp99", "ACKp50", "ACKp99", "ACKmax",
            "lag_ms field", "drain ms", "runs"))
        P("-" * 202)
        for load in LOADS:
            for s in servers:
                rs = [r for r in r2 if r["server"] == s and r["load"] == load]
                if not rs:
                    continue
                lf = med([r.get("lagms_p50") for r in rs])
                lagf = "NA" if lf is None else "%s/%s/%s" % (
                    f(lf), f(med([r.get("lagms_p99") for r in rs])),
                    f(mx([r.get("lagms_max") for r in rs])))
                mbps = med([r.get("stream_Bps") for r in rs])
                P("%-5s %-9s | %9s %7s | %8s %8s %8s | %7s %7s %7s | %7s %7s %7s | %6s %6s | %7s %7s %7s | %12s | %8s | %d" % (
                    load, s, f(med([r.get("wrate") for r in rs])),
                    f(None if mbps is None else mbps / 1e6, "%.1f"),
                    f(med([r.get("bytes_p50") for r in rs])), f(med([r.get("bytes_p99") for r in rs])),
                    f(mx([r.get("bytes_max") for r in rs])),
                    f(med([r.get("push_p50") for r in rs]), "%.3f"),
                    f(med([r.get("push_p99") for r in rs]), "%.3f"),
                    f(mx([r.get("push_max") for r in rs]), "%.2f"),
                    f(med([r.get("ms_p50") for r in rs]), "%.2f"), f(med([r.get("ms_p99") for r in rs]), "%.2f"),
                    f(mx([r.get("ms_max") for r in rs]), "%.1f"),
                    f(med([r.get("set_p50") for r in rs]), "%.2f"), f(med([r.get("set_p99") for r in rs]), "%.2f"),
                    f(med([r.get("ack_p50") for r in rs]), "%.3f"), f(med([r.get("ack_p99") for r in rs]), "%.3f"),
                    f(mx([r.get("ack_max") for r in rs]), "%.2f"),
                    lagf, f(med([r.get("drain_ms") for r in rs]), "%.1f"), len(rs)))
        P("write/s: redis-benchmark rps (max) or the rate-limited client's achieved rate (half);"
          " MB/s: master_repl_offset growth; B = bytes behind;")
        P("push = probe HSET written -> its keyspace event from the replica (applied there; no polling; NA when"
          " the replica does not notify);")
        P("ms = probe HSET written -> seen by HGET polling the replica every --poll-ms (1), so p99 >= ~1 ms;"
          " SETp50/p99 = the probe write's own latency at the master;"
          " lag_ms field = tether's INFO slave0 lag_ms p50/p99/max (ACK-based, 1 s ACK period);")
        P("ACK = the probe SET sent -> a WAIT 1 1000 pipelined behind it answered 1: master -> replica applies ->"
          " REPLCONF ACK -> master, no polling (an upper bound on the lag);")
        P("drain = ms after the load stopped until slave_repl_offset reached the master's offset.")
        for r in r2:
            bad = []
            if r.get("unseen"):
                bad.append("%d probes never seen" % r["unseen"])
            if r.get("push_unseen"):
                bad.append("%d probes without a keyspace event" % r["push_unseen"])
            if r.get("link_not_up"):
                bad.append("link not up in %d samples" % r["link_not_up"])
            if r.get("undrained_bytes"):
                bad.append("still %d bytes behind 10 s after the load" % r["undrained_bytes"])
            if r.get("errors"):
                bad.append("errors: %s" % "; ".join(r["errors"]))
            if r.get("unacked"):
                bad.append("%d probe WAITs timed out (answered 0)" % r["unacked"])
            if r.get("load_errors"):
                bad.append("load client saw %s error replies" % r["load_errors"])
            if bad:
                P("  note: %s %s rep %s: %s" % (r["server"], r["load"], r.get("rep"), ", ".join(bad)))
        for load in LOADS:
            for s in servers[1:]:
                a_ = [r for r in r2 if r["server"] == s and r["load"] == load]
                b_ = [r for r in r2 if r["server"] == base and r["load"] == load]
                if a_ and b_:
                    P("%s/%s %-4s: push ms p50 %s, p99 %s; ACK ms p50 %s, p99 %s; probe ms p50 %s, p99 %s;"
                      " bytes p50 %s, p99 %s" % (
                        s, base, load,
                        ratio(med([r.get("push_p50") for r in a_]), med([r.get("push_p50") for r in b_])),
                        ratio(med([r.get("push_p99") for r in a_]), med([r.get("push_p99") for r in b_])),
                        ratio(med([r.get("ack_p50") for r in a_]), med([r.get("ack_p50") for r in b_])),
                        ratio(med([r.get("ack_p99") for r in a_]), med([r.get("ack_p99") for r in b_])),
                        ratio(med([r.get("ms_p50") for r in a_]), med([r.get("ms_p50") for r in b_])),
                        ratio(med([r.get("ms_p99") for r in a_]), med([r.get("ms_p99") for r in b_])),
                        ratio(med([r.get("bytes_p50") for r in a_]), med([r.get("bytes_p50") for r in b_])),
                        ratio(med([r.get("bytes_p99") for r in a_]), med([r.get("bytes_p99") for r in b_]))))
        P("")

    # ---- part 3
    r3_ = [r for r in recs if r.get("part") == 3]
    if r3_:
        P("3. full sync to a fresh replica")
        P("   " + os.environ.get("DESC3", ""))
        P("%-9s | %8s %8s %8s | %6s | %-26s | %-26s" % (
            "server", "secs med", "min", "max", "ok", "GET ms p50/p99/max in sync", "GET ms p50/p99/max idle"))
        P("-" * 106)
        med_s = {}
        for s in servers:
            rs = [r for r in r3_ if r["server"] == s and r.get("kind") == "sync"]
            if not rs:
                continue
            ok = [r for r in rs if r.get("status") == "ok"]
            secs = [r["secs"] for r in ok]
            med_s[s] = med(secs)
            bl = [r for r in r3_ if r["server"] == s and r.get("kind") == "latency"]
            ins = "%s/%s/%s" % (f(med([r.get("get_p50") for r in rs]), "%.3f"),
                                f(med([r.get("get_p99") for r in rs]), "%.2f"),
                                f(mx([r.get("get_max") for r in rs]), "%.2f"))
            idle = "%s/%s/%s" % (f(med([r.get("get_p50") for r in bl]), "%.3f"),
                                 f(med([r.get("get_p99") for r in bl]), "%.2f"),
                                 f(mx([r.get("get_max") for r in bl]), "%.2f"))
            P("%-9s | %8s %8s %8s | %6s | %-26s | %-26s" % (
                s, f(med_s[s], "%.3f"), f(min(secs) if secs else None, "%.3f"),
                f(max(secs) if secs else None, "%.3f"), "%d/%d" % (len(ok), len(rs)), ins, idle))
        for s in servers[1:]:
            if s in med_s and base in med_s:
                P("%s/%s full sync time: %s (lower is better)" % (s, base, ratio(med_s[s], med_s[base])))
        phases = [r for r in r3_ if r.get("kind") == "sync"]
        P("phases (s after replica start, median): " + "; ".join(
            "%s link_up %s loading %s" % (s, f(med([r.get("t_link_up") for r in phases if r["server"] == s]), "%.3f"),
                                          f(med([r.get("t_loading") for r in phases if r["server"] == s]), "%.3f"))
            for s in servers if any(r["server"] == s for r in phases)))
        for r in phases:
            if r.get("status") != "ok" or r.get("errors") or r.get("note"):
                P("  note: %s rep %s: status %s last %s %s %s" % (
                    r["server"], r.get("rep"), r.get("status"), r.get("last"),
                    "; ".join(r.get("errors") or []), r.get("note", "")))
        P("")
    print("\n".join(out))


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("lag")
    p.add_argument("--master", type=int, required=True)
    p.add_argument("--replica", type=int, required=True)
    p.add_argument("--info-ms", type=float, default=5)
    p.add_argument("--probe-ms", type=float, default=10)
    p.add_argument("--poll-ms", type=float, default=1)
    p.add_argument("--no-wait", dest="wait", action="store_false")
    p.add_argument("--secs", type=float, default=0)
    p.add_argument("--tag", action="append")
    p.set_defaults(fn=cmd_lag)

    p = sub.add_parser("load")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=int, required=True)
    p.add_argument("--secs", type=float, required=True)
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--keyspace", type=int, default=100000)
    p.add_argument("--size", type=int, default=3)
    p.add_argument("--tick-ms", type=float, default=1)
    p.add_argument("--tag", action="append")
    p.set_defaults(fn=cmd_load)

    p = sub.add_parser("syncwait")
    p.add_argument("--replica", type=int, required=True)
    p.add_argument("--keys", type=int, required=True)
    p.add_argument("--t0-ns", type=int, required=True)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--lat-port", type=int, default=0)
    p.add_argument("--tag", action="append")
    p.set_defaults(fn=cmd_syncwait)

    p = sub.add_parser("latency")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--secs", type=float, required=True)
    p.add_argument("--tag", action="append")
    p.set_defaults(fn=cmd_latency)

    p = sub.add_parser("report")
    p.add_argument("records")
    p.set_defaults(fn=cmd_report)

    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()

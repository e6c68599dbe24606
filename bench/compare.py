"""Driver of bench/compare.sh (see its header for the knobs). Python standard library only.

One interleaved sequence of cases, each a client driving a path to the same three sinks
(`logdist analyzer --no-register`, counting), for each workload:

  ceiling            wrk -> one analyzer (no proxy: the most the sinks can take)
  nginx              wrk -> nginx 1.22 (weights 5/3/2, keepalive 64) -> 3 analyzers
  haproxy            wrk -> HAProxy 2.6 (roundrobin 5/3/2, http-reuse always) -> 3 analyzers
  logdist-delivered  wrk -> logdist distributor --ack delivered (0.5/0.3/0.2) -> 3 analyzers
  logdist-accepted   wrk -> logdist distributor --ack accepted -> 3 analyzers
  logdist-framing    wrk -> logdist distributor --validate framing -> 3 analyzers
                     (only when `logdist distributor --help` lists --validate)
  *-paced            logdist loadgen --rate R -> nginx, HAProxy, logdist --ack delivered
                     (and logdist --validate framing): the same offered load for every
                     path, so the latencies compare at equal load (R per workload: the
                     PACED knob)
  loadgen            logdist loadgen -> one analyzer: how fast the load generator itself is,
  wrk-replay         set against wrk -> the same analyzer sending the same packets (the
                     load generator's pool, `loadgen --write-bodies`, bench/peers/replay.lua)

Protocol workloads (`PROTOCOL:N`, e.g. `otlp:100`): the same N records a request in
each ingest protocol `logdist loadgen --protocol` speaks (ndjson, json, otlp, otlp-json,
bulk, loki), from the load generator's pool (`--write-bodies`, seed 1) replayed by wrk
(bench/peers/replay.lua for ndjson, bodies.lua for the others) to the protocol's path. Only
nginx, logdist-delivered and logdist-accepted run them: logdist decodes, maps, routes by
messages and delivers, counted at the sinks; nginx passes the same bodies opaque to the
sinks' /packets, so its messages/s is weighted by requests (answered 2xx x N). A case that
fails is reported and skipped, not fatal (/_bulk, or shippers' JSON at /packets, may not be
served by the distributor built).

Each case: start the proxy (fresh per case), a warm-up client run of WARMUP, then the
measured client run of DURATION. Messages are counted at the analyzers (GET /stats
`messages`) just before and just after the measured run; CPU seconds of the client, the
proxy and the sinks over the measured run; the proxy's RSS is sampled every 200 ms.
"""

import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "logdist"
PEERS = ROOT / "bench" / "peers"
RESULTS = ROOT / "bench" / "results"

WEIGHTS = [0.5, 0.3, 0.2]
CORES = os.cpu_count() or 1
TICK = os.sysconf("SC_CLK_TCK")


def seconds(text):
    """'10s', '500ms', '2m' or '3' (seconds) -> float seconds."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|m|)\s*", text)
    if not m:
        sys.exit(f"compare: cannot read the duration {text!r} (use e.g. 10s, 500ms, 2m)")
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "": 1.0, "m": 60.0}[m.group(2)]


def knobs():
    k = {
        "RUNS": int(os.environ.get("RUNS", "3")),
        "DURATION": os.environ.get("DURATION", "10s"),
        "WARMUP": os.environ.get("WARMUP", "2s"),
        "CONNECTIONS": int(os.environ.get("CONNECTIONS", "64")),
        "THREADS": int(os.environ.get("THREADS", "2")),
        "CASES": os.environ.get("CASES", ""),
        "WORKLOADS": os.environ.get("WORKLOADS", "1,100,mix,ndjson:100,json:100,otlp:100,bulk:100"),
        "MIX": os.environ.get("MIX", "1..1000"),
        "MIX_BODIES": int(os.environ.get("MIX_BODIES", "64")),
        "PACED": os.environ.get("PACED", "1=30000,100=20000,mix=6000"),
        "PACED_AGENTS": int(os.environ.get("PACED_AGENTS", "128")),
    }
    k["duration_s"] = seconds(k["DURATION"])
    k["warmup_s"] = seconds(k["WARMUP"])
    lo, _, hi = k["MIX"].partition("..")
    k["mix_range"] = (int(lo), int(hi or lo))
    k["paced_rate"] = {}
    for item in filter(None, (i.strip() for i in k["PACED"].split(","))):
        w, _, rate = item.partition("=")
        if not rate.strip().isdigit():
            sys.exit(f"compare: PACED wants WORKLOAD=REQUESTS_PER_S items, got {item!r}")
        k["paced_rate"][w.strip()] = int(rate)
    return k


# === processes ===


class Procs:
    """Every process this run started, so that all of them are stopped on any exit."""

    def __init__(self):
        self.procs = []

    def start(self, args, log, env=None):
        out = open(log, "ab")
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "RUST_LOG": "warn", **(env or {})})
        out.close()
        proc.log = log
        proc.extra_pids = []  # children we may have to stop ourselves (nginx workers)
        self.procs.append(proc)
        return proc

    def stop(self, proc, timeout=15):
        if proc.returncode is None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            except ProcessLookupError:
                pass
        for pid in proc.extra_pids:  # only if they outlived their master
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self):
        for proc in list(reversed(self.procs)):
            self.stop(proc, timeout=5)


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def children(pid):
    """Direct children of pid (nginx's workers), from /proc."""
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if int(fields[1]) == pid:
                kids.append(int(d.name))
    return kids


def cpu_seconds(pid):
    """utime + stime of a live process (all its threads), in seconds; 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of stat(5)


def rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def machine_busy():
    """(busy, irq, total) jiffies of the whole machine, from /proc/stat. irq (hard and
    soft interrupts, loopback's packet processing among them) is part of busy but is not
    charged to any process."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(f[:8])
    return total - f[3] - f[4], f[5] + f[6], total


class RssSampler(threading.Thread):
    """Samples the summed VmRSS of pids() every 200 ms and keeps the peak."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids, self.peak_kib, self.halt = pids, 0, threading.Event()

    def run(self):
        while not self.halt.is_set():
            self.peak_kib = max(self.peak_kib, sum(rss_kib(p) for p in self.pids()))
            self.halt.wait(0.2)

    def stop(self):
        self.halt.set()
        self.join()
        return self.peak_kib / 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def wait_up(proc, url, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            fail(f"{what} exited with status {proc.returncode} while starting", proc.log)
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.05)
    fail(f"{what} did not answer {url} within {timeout} s", proc.log)


def fail(message, log=None):
    text = f"compare: {message}"
    if log and Path(log).exists():
        tail = Path(log).read_text(errors="replace").splitlines()[-40:]
        text += f"\n--- last lines of {log} ---\n" + "\n".join(tail)
    raise RuntimeError(text)


def wait_rusage(proc):
    """Waits for proc and returns the CPU seconds it used (all threads), exactly."""
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime


def tool_has(args, flag):
    out = subprocess.run([str(BIN), *args, "--help"], capture_output=True, text=True).stdout
    return flag in out


# === the paths ===


def servers_block(ports, fmt):
    return "\n".join(fmt.format(i=i, port=p, w=round(w * 10))
                     for i, (p, w) in enumerate(zip(ports, WEIGHTS), 1))


def fill(template, scratch, name, **values):
    text = (PEERS / template).read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    if "@" in re.sub(r"#.*", "", text):
        fail(f"{template}: a placeholder was left unfilled")
    path = scratch / name
    path.write_text(text)
    return path


def start_nginx(procs, port, sinks, scratch, k):
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (scratch / d).mkdir(exist_ok=True)
    conf = fill("nginx.conf.in", scratch, "nginx.conf", SCRATCH=scratch, PORT=port,
                WORKERS=CORES, USER="user root;" if os.geteuid() == 0 else "",
                SERVERS=servers_block(sinks, "    server 127.0.0.1:{port} weight={w};"))
    proc = procs.start(["nginx", "-p", str(scratch), "-e", str(scratch / "nginx-error.log"),
                        "-c", str(conf)], scratch / "nginx.log")
    return proc, lambda: [proc.pid] + children(proc.pid)


def start_haproxy(procs, port, sinks, scratch, k):
    cfg = fill("haproxy.cfg.in", scratch, "haproxy.cfg", PORT=port, THREADS=CORES,
               SERVERS=servers_block(sinks, "  server analyzer_{i} 127.0.0.1:{port} weight {w}"))
    proc = procs.start(["haproxy", "-f", str(cfg), "-db"], scratch / "haproxy.log")
    return proc, lambda: [proc.pid] + children(proc.pid)


def logdist_starter(*flags):
    def start(procs, port, sinks, scratch, k):
        args = [str(BIN), "distributor", "--listen", f"127.0.0.1:{port}", *flags]
        for i, (p, w) in enumerate(zip(sinks, WEIGHTS), 1):
            args += ["--analyzer", f"analyzer_{i}=http://127.0.0.1:{p}@{w}"]
        proc = procs.start(args, scratch / "distributor.log")
        return proc, lambda: [proc.pid]
    return start


# name -> (description for the table, starter or None for the ceiling, client)
def all_cases(has_validate):
    cases = {
        "ceiling": ("wrk -> analyzer (ceiling)", None, "wrk"),
        "nginx": ("wrk -> nginx -> 3 analyzers", start_nginx, "wrk"),
        "haproxy": ("wrk -> HAProxy -> 3 analyzers", start_haproxy, "wrk"),
        "logdist-delivered": ("wrk -> logdist --ack delivered -> 3 analyzers",
                              logdist_starter("--ack", "delivered"), "wrk"),
        "logdist-accepted": ("wrk -> logdist --ack accepted -> 3 analyzers",
                             logdist_starter("--ack", "accepted"), "wrk"),
    }
    if has_validate:
        cases["logdist-framing"] = ("wrk -> logdist --validate framing -> 3 analyzers",
                                    logdist_starter("--validate", "framing"), "wrk")
    cases["loadgen"] = ("logdist loadgen -> analyzer", None, "loadgen")
    cases["wrk-replay"] = ("wrk (the loadgen's packets) -> analyzer", None, "replay")
    # The same offered load for every path (latency at equal load, not at each one's peak).
    cases["nginx-paced"] = ("paced loadgen -> nginx -> 3 analyzers", start_nginx, "paced")
    cases["haproxy-paced"] = ("paced loadgen -> HAProxy -> 3 analyzers", start_haproxy, "paced")
    cases["logdist-paced"] = ("paced loadgen -> logdist --ack delivered -> 3 analyzers",
                              logdist_starter("--ack", "delivered"), "paced")
    if has_validate:
        # What full validation costs in latency: the same load with framing only.
        cases["logdist-framing-paced"] = ("paced loadgen -> logdist --validate framing -> 3 analyzers",
                                          logdist_starter("--validate", "framing"), "paced")
    return cases


# === protocol workloads ===

# `logdist loadgen --protocol` name -> (path, Content-Type, title)
PROTOCOLS = {
    "ndjson": ("/packets", "application/x-ndjson", "logdist's NDJSON"),
    "json": ("/packets", "application/json", "Fluent Bit-shaped JSON array"),
    "otlp": ("/v1/logs", "application/x-protobuf", "OTLP/HTTP protobuf"),
    "otlp-json": ("/v1/logs", "application/json", "OTLP/JSON"),
    "bulk": ("/_bulk", "application/x-ndjson", "Elasticsearch bulk"),
    "loki": ("/loki/api/v1/push", "application/x-protobuf", "Loki push (snappy protobuf)"),
}
# The cases that run protocol workloads: the ceiling, HAProxy and the load generator's own
# cases send to paths or with bodies the sinks do not take.
PROTOCOL_CASES = ("nginx", "logdist-delivered", "logdist-accepted")


def protocol_of(workload):
    """(protocol, records a request) of a `PROTOCOL:N` workload, else (None, None)."""
    name, sep, n = str(workload).partition(":")
    if not sep:
        return None, None
    return name, int(n)


def runs_case(name, workload):
    return protocol_of(workload)[0] is None or name in PROTOCOL_CASES


# === the clients ===

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def wrk_ms(value):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", value)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def parse_wrk(out):
    """wrk's text (--latency) and the WRK_JSON line printed by bench/peers/common.lua."""
    r = {"latency_ms": {}}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "75%", "90%", "99%"):
            r["latency_ms"]["p" + parts[0][:-1]] = wrk_ms(parts[1])
        elif line.startswith("WRK_JSON "):
            r["wrk"] = json.loads(line[len("WRK_JSON "):])
        elif line.startswith("Requests/sec:"):
            r["requests_per_s_text"] = float(parts[1])
    if "wrk" not in r or "p99" not in r["latency_ms"]:
        fail("could not read wrk's output:\n" + out)
    w = r["wrk"]
    r["duration_s"] = w["duration_us"] / 1e6
    r["requests"] = w["requests"]
    r["requests_per_s"] = w["requests"] / r["duration_s"] if r["duration_s"] else 0.0
    r["failed"] = sum(w["errors"].values())
    r["errors"] = w["errors"]
    return r


def wrk_args(k, workload, url, secs, bodies=None):
    protocol, _ = protocol_of(workload)
    if bodies and protocol not in (None, "ndjson"):
        script, extra = PEERS / "bodies.lua", [str(bodies), PROTOCOLS[protocol][1]]
    elif bodies:
        script, extra = PEERS / "replay.lua", [str(bodies)]
    elif workload == "mix":
        lo, hi = k["mix_range"]
        script, extra = PEERS / "mix.lua", [str(lo), str(hi), str(k["MIX_BODIES"]), "1"]
    else:
        script, extra = PEERS / "packet.lua", [str(workload)]
    # wrk takes whole seconds; --timeout 10s so that a slow answer is a latency, not an error.
    return ["wrk", f"-t{k['THREADS']}", f"-c{k['CONNECTIONS']}", f"-d{max(1, round(secs))}s",
            "--timeout", "10s", "--latency", "-s", str(script), url, "--", *extra]


def packet_size(k, workload):
    protocol, n = protocol_of(workload)
    if protocol:
        return str(n)
    return f"{k['mix_range'][0]}..{k['mix_range'][1]}" if workload == "mix" else str(workload)


def write_bodies(k, workload, scratch):
    """The packets `logdist loadgen` sends on `workload` (its pool, seed 1, in the
    workload's protocol), written for wrk's replay.lua (or bodies.lua), so that wrk and the
    load generator are compared on the same packets."""
    protocol, _ = protocol_of(workload)
    path = scratch / f"bodies-{str(workload).replace(':', '-')}.bodies"
    if not path.exists():
        p = subprocess.run([str(BIN), "loadgen", "--packet-size", packet_size(k, workload), "--seed", "1",
                            "--protocol", protocol or "ndjson", "--write-bodies", str(path)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            fail(f"logdist loadgen --write-bodies failed for workload {workload}:\n{p.stderr}")
    return path


def loadgen_args(k, workload, target, secs, report, rate=None):
    size = packet_size(k, workload)
    paced = ["--rate", str(rate)] if rate else []
    agents = k["PACED_AGENTS"] if rate else k["CONNECTIONS"]
    return [str(BIN), "loadgen", "--target", target, "--agents", str(agents),
            "--packet-size", size, "--duration", f"{int(secs * 1000)}ms", "--report", str(report),
            "--quiet", "--seed", "1", *paced]


def run_client(procs, k, kind, workload, base, secs, scratch, tag):
    """Runs one client to completion; returns (its parsed result, its CPU seconds)."""
    if kind in ("wrk", "replay"):
        log = scratch / f"wrk-{tag}.out"
        log.write_bytes(b"")
        protocol, _ = protocol_of(workload)
        replayed = kind == "replay" or protocol is not None
        bodies = write_bodies(k, workload, scratch) if replayed else None
        path = PROTOCOLS[protocol][0] if protocol else "/packets"
        proc = procs.start(wrk_args(k, workload, f"{base}{path}", secs, bodies), log)
        cpu = wait_rusage(proc)
        procs.procs.remove(proc)
        out = log.read_text(errors="replace")
        if proc.returncode != 0:
            fail(f"wrk exited with status {proc.returncode}", log)
        return parse_wrk(out), cpu
    report = scratch / f"loadgen-{tag}.json"
    report.unlink(missing_ok=True)
    rate = k["paced_rate"].get(str(workload)) if kind == "paced" else None
    if kind == "paced" and not rate:
        fail(f"no paced rate for workload {workload}: add it to PACED (e.g. PACED={workload}=5000)")
    proc = procs.start(loadgen_args(k, workload, base, secs, report, rate), scratch / f"loadgen-{tag}.out")
    cpu = wait_rusage(proc)
    procs.procs.remove(proc)
    if proc.returncode != 0 or not report.exists():
        fail(f"logdist loadgen exited with status {proc.returncode}", proc.log)
    rep = json.loads(report.read_text())
    lat = rep["latency_ms"]
    return {"duration_s": rep["duration_s"], "requests": rep["packets_acked"],
            "requests_per_s": rep["packets_acked"] / rep["duration_s"] if rep["duration_s"] else 0.0,
            "failed": rep["packets_failed"], "errors": rep.get("failures", {}),
            "latency_ms": {"p50": lat["p50"], "p99": lat["p99"], "max": lat["max"]},
            "loadgen": {key: rep[key] for key in ("packets_sent", "packets_acked", "packets_failed",
                                                  "messages_sent", "messages_acked", "messages_per_s")}}, cpu


# === one case ===


def counts(sinks):
    return [get_json(f"http://127.0.0.1:{p}/stats")["messages"] for p in sinks]


def settled_counts(sinks, timeout=10.0):
    """The sinks' counts once they stop moving: a distributor's queues (--ack accepted)
    may still be delivering after the client stopped."""
    prev, deadline = counts(sinks), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        cur = counts(sinks)
        if cur == prev:
            return cur
        prev = cur
    return prev


def run_case(procs, k, name, case, workload, sinks, sink_procs, scratch):
    label, starter, client = case
    proc, pp = None, []
    if starter:
        port = free_port()
        proc, proxy_pids = starter(procs, port, sinks, scratch, k)
        wait_up(proc, f"http://127.0.0.1:{port}/health", name)
        time.sleep(0.2)  # let nginx's workers all start before they are listed
        base = f"http://127.0.0.1:{port}"
        pp = proxy_pids()  # the proxy's processes, listed once (nginx: master and workers)
        proc.extra_pids = [p for p in pp if p != proc.pid]
    else:  # straight to the first analyzer
        base = f"http://127.0.0.1:{sinks[0]}"
    targets = sinks
    sampler = RssSampler(lambda: pp)
    sampler.start()
    tag = f"{name}-{workload}"
    try:
        if k["warmup_s"] > 0:
            run_client(procs, k, client, workload, base, k["warmup_s"], scratch, tag + "-warmup")
        sink_pids = [s.pid for s in sink_procs]
        before = settled_counts(targets)  # nothing of the warm-up still on its way
        cpu0 = {p: cpu_seconds(p) for p in pp + sink_pids}
        busy0 = machine_busy()
        wall0 = time.monotonic()
        result, client_cpu = run_client(procs, k, client, workload, base, k["duration_s"], scratch, tag)
        wall = time.monotonic() - wall0
        cpu1 = {p: cpu_seconds(p) for p in pp + sink_pids}
        busy1 = machine_busy()
        after = counts(targets)
        settled = settled_counts(targets)
    finally:
        peak = sampler.stop()
        if proc:
            procs.stop(proc)
    window = result["duration_s"]
    delivered = [a - b for a, b in zip(after, before)]
    total = sum(delivered)
    proxy_cpu = sum(cpu1[p] - cpu0[p] for p in pp)
    sinks_cpu = sum(cpu1[p] - cpu0[p] for p in sink_pids)
    # CPU over the same wall-clock bracket as the machine's busy time (the client's own
    # run, start to exit); messages/s over the client's measured duration.
    pct = lambda s: 100.0 * s / (wall * CORES) if wall else 0.0
    jiffies = max(1, busy1[2] - busy0[2])
    busy_pct = 100.0 * (busy1[0] - busy0[0]) / jiffies
    irq_pct = 100.0 * (busy1[1] - busy0[1]) / jiffies
    # Shares are taken over every message routed in the window, once delivered (the
    # distributor's routing); the messages/s only over what arrived within the window.
    routed = [s - b for s, b in zip(settled, before)]
    shares = [d / sum(routed) if sum(routed) else 0.0 for d in routed]
    shares_in_window = [d / total if total else 0.0 for d in delivered]
    through_proxy = starter is not None
    protocol, per_request = protocol_of(workload)
    # nginx passes a protocol's bodies opaque (the sinks count newlines, not records): its
    # messages are the records of the requests it answered 2xx.
    by_requests = protocol is not None and not name.startswith("logdist")
    if by_requests:
        total = max(0, result["requests"] - result["failed"]) * per_request
        through_proxy_shares = False
    else:
        through_proxy_shares = through_proxy
    r = {
        "case": name, "path": label, "workload": str(workload),
        "messages_by_requests": by_requests,
        "window_s": window, "wall_s": wall,
        "messages_delivered": total, "delivered_per_analyzer": delivered,
        "routed_per_analyzer": routed,
        "delivered_after_window": sum(routed) - sum(delivered),
        "messages_per_s": total / window if window else 0.0,
        "requests": result["requests"], "requests_per_s": result["requests_per_s"],
        "failed_requests": result["failed"], "errors": result["errors"],
        "p50_ms": result["latency_ms"]["p50"], "p99_ms": result["latency_ms"]["p99"],
        "latency_ms": result["latency_ms"],
        "cpu_s": {"client": client_cpu, "proxy": proxy_cpu, "sinks": sinks_cpu},
        "cpu_pct": {"client": pct(client_cpu), "proxy": pct(proxy_cpu), "sinks": pct(sinks_cpu),
                    "machine": busy_pct, "irq": irq_pct,
                    "other": max(0.0, busy_pct - pct(client_cpu) - pct(proxy_cpu) - pct(sinks_cpu))},
        "peak_rss_mib": peak if through_proxy else None,
        "shares": shares if through_proxy_shares else None,
        "shares_in_window": shares_in_window if through_proxy_shares else None,
        "share_error": [abs(s - w) for s, w in zip(shares, WEIGHTS)] if through_proxy_shares else None,
        "max_share_error": (max(abs(s - w) for s, w in zip(shares, WEIGHTS))
                            if through_proxy_shares else None),
    }
    if "loadgen" in result:
        r["loadgen"] = result["loadgen"]
    if "wrk" in result:
        r["wrk"] = result["wrk"]
    return r


# === summary and output ===


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs, order, workloads):
    rows = []
    for w in workloads:
        for name in order:
            rs = [r for r in runs if r["case"] == name and r["workload"] == str(w)]
            if not rs:
                continue
            row = {"case": name, "path": rs[0]["path"], "workload": str(w), "runs": len(rs)}
            for key in ("messages_per_s", "requests_per_s", "p50_ms", "p99_ms", "peak_rss_mib",
                        "max_share_error"):
                row[key] = med(r[key] for r in rs)
            row["cpu_pct"] = {g: med(r["cpu_pct"][g] for r in rs)
                              for g in ("client", "proxy", "sinks", "machine", "irq", "other")}
            row["shares"] = ([med(r["shares"][i] for r in rs) for i in range(len(WEIGHTS))]
                             if rs[0]["shares"] else None)
            row["failed_requests"] = sum(r["failed_requests"] for r in rs)
            rows.append(row)
    by = {(r["case"], r["workload"]): r for r in rows}
    for r in rows:
        peer = "nginx-paced" if r["case"].endswith("-paced") else "nginx"
        ceil, ngx = by.get(("ceiling", r["workload"])), by.get((peer, r["workload"]))
        r["vs_ceiling"] = r["messages_per_s"] / ceil["messages_per_s"] if ceil and ceil["messages_per_s"] else None
        r["vs_nginx"] = r["messages_per_s"] / ngx["messages_per_s"] if ngx and ngx["messages_per_s"] else None
    loadgen = []
    for w in workloads:
        lg, own = by.get(("loadgen", str(w))), by.get(("ceiling", str(w)))
        wk = by.get(("wrk-replay", str(w))) or own
        if lg and wk:
            loadgen.append({
                "workload": str(w),
                "same_packets": wk["case"] == "wrk-replay",
                "wrk_own_requests_per_s": own["requests_per_s"] if own else None,
                "wrk_requests_per_s": wk["requests_per_s"], "loadgen_requests_per_s": lg["requests_per_s"],
                "ratio_requests": lg["requests_per_s"] / wk["requests_per_s"] if wk["requests_per_s"] else None,
                "wrk_messages_per_s": wk["messages_per_s"], "loadgen_messages_per_s": lg["messages_per_s"],
                "ratio_messages": lg["messages_per_s"] / wk["messages_per_s"] if wk["messages_per_s"] else None,
                "wrk_cpu_pct": wk["cpu_pct"]["client"], "loadgen_cpu_pct": lg["cpu_pct"]["client"],
                "wrk_p99_ms": wk["p99_ms"], "loadgen_p99_ms": lg["p99_ms"],
            })
    return rows, loadgen, protocol_summary(by, workloads)


def protocol_summary(by, workloads):
    """Per protocol workload: logdist against nginx (target 1.2x), and shippers' JSON
    against native NDJSON of the same size through logdist (target 0.7x)."""
    out = []
    for w in workloads:
        protocol, n = protocol_of(w)
        if not protocol:
            continue
        ld, ngx = by.get(("logdist-delivered", str(w))), by.get(("nginx", str(w)))
        native = by.get(("logdist-delivered", f"ndjson:{n}"))
        entry = {
            "workload": str(w), "protocol": protocol, "records_per_request": n,
            "logdist_messages_per_s": ld["messages_per_s"] if ld else None,
            "nginx_messages_per_s": ngx["messages_per_s"] if ngx else None,
            "vs_nginx": (ld["messages_per_s"] / ngx["messages_per_s"]
                         if ld and ngx and ngx["messages_per_s"] else None),
            "logdist_failed_requests": ld["failed_requests"] if ld else None,
        }
        if protocol == "json" and ld and native and native["messages_per_s"]:
            entry["vs_native_ndjson"] = ld["messages_per_s"] / native["messages_per_s"]
        out.append(entry)
    return out


def fmt(v, spec, none="–"):
    return none if v is None else format(v, spec)


def workload_title(w, k):
    protocol, n = protocol_of(w)
    if protocol:
        return (f"{PROTOCOLS[protocol][2]} ({protocol}), {n} records a request to {PROTOCOLS[protocol][0]} "
                "(the load generator's bodies replayed by wrk; nginx's msg/s = requests answered 2xx x records)")
    if w == "mix":
        lo, hi = k["mix_range"]
        return f"Packets of {lo}..{hi} messages (uniform; wrk cycles through {k['MIX_BODIES']} pre-built bodies per thread)"
    return f"Packets of {w} message{'s' if w != '1' else ''}"


def markdown(rows, loadgen, k, env, command, protocols=()):
    out = ["# logdist against nginx and HAProxy, and the ceiling", "",
           f"`{command}`", "",
           f"wrk -t{k['THREADS']} -c{k['CONNECTIONS']}, {k['WARMUP']} warm-up then {k['DURATION']} measured "
           f"per case, median of {k['RUNS']} interleaved run(s) (the case order rotates each round). "
           "Every path ends at the same three `logdist analyzer --no-register` sinks"
           f"{' (--count-only)' if env['sinks_count_only'] else ''}; messages are counted at the sinks "
           "(`GET /stats`) over the measured window only. Weights 0.5/0.3/0.2 (nginx, HAProxy: 5/3/2).", "",
           "- **msg/s**: messages delivered to the sinks per second. **x ceiling / x nginx**: the same "
           "against wrk straight to one sink, and against nginx.",
           "- **p50/p99**: request latency seen by the client (wrk `--latency`).",
           "- **paced** rows: `logdist loadgen --agents "
           f"{k['PACED_AGENTS']} --rate R` offers every path the same load, R requests/s "
           f"({', '.join(f'{w}: {r:,}' for w, r in k['paced_rate'].items())}), below what each "
           "path takes at its peak: their p50/p99 compare latency at equal offered load (the wrk rows "
           "compare it at each path's own peak, where the fastest path also carries the most). "
           "**x nginx** of a paced row is against paced nginx.",
           f"- **CPU**: CPU time over the measured window in % of the machine ({CORES} cores = 100%): "
           "client / proxy (all its processes) / sinks (all three); **other**: the rest of the machine's "
           "busy time (/proc/stat): interrupts not charged to a process, and anything else running, which "
           "skews the numbers (a few % is normal; the JSON also has the machine's busy and interrupt %).",
           "- **RSS**: the proxy's peak resident memory (VmRSS sampled every 200 ms, nginx master + workers).",
           "- **shares**: each sink's achieved share of messages (target 50/30/20 %); **max err**: the largest "
           "|share - target|, in percentage points. Both are taken over every message sent in the measured "
           "window once delivered (with `--ack accepted` some arrive after the window); the JSON also has "
           "the shares of what arrived within the window. nginx and HAProxy balance requests, not messages.",
           ""]
    if k["RUNS"] < 3 or k["duration_s"] < 10:
        out[2:2] = [f"**A short run (RUNS={k['RUNS']}, DURATION={k['DURATION']}): a smoke test of the "
                    "script, not a measurement.**", ""]
    others = [r["cpu_pct"]["other"] for r in rows]
    if others and statistics.mean(others) > 15:
        out[2:2] = [f"**Other processes used {statistics.mean(others):.0f}% of the machine on average during "
                    "the measured windows (column `other %`): the numbers are skewed.**", ""]
    for w in sorted({r["workload"] for r in rows},
                    key=lambda x: (protocol_of(x)[0] is not None, x == "mix", int(x) if x.isdigit() else 0, x)):
        out += [f"## {workload_title(w, k)}", "",
                "| path | msg/s | x ceiling | x nginx | p50 ms | p99 ms | CPU client/proxy/sinks % | other % "
                "| RSS MiB | shares % | max err pp | failed |",
                "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: |"]
        for r in rows:
            if r["workload"] != w or r["case"] in ("loadgen", "wrk-replay"):
                continue
            c = r["cpu_pct"]
            shares = "/".join(f"{100 * s:.1f}" for s in r["shares"]) if r["shares"] else "–"
            out.append(
                f"| {r['path']} | {r['messages_per_s']:,.0f} | {fmt(r['vs_ceiling'], '.2f')} | "
                f"{fmt(r['vs_nginx'], '.2f')} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{c['client']:.0f} / {c['proxy']:.0f} / {c['sinks']:.0f} | {c['other']:.0f} | "
                f"{fmt(r['peak_rss_mib'], '.1f')} | {shares} | "
                f"{fmt(None if r['max_share_error'] is None else 100 * r['max_share_error'], '.2f')} | "
                f"{r['failed_requests']} |")
        out.append("")
    if loadgen:
        out += ["## The load generator against wrk", "",
                f"`logdist loadgen --agents {k['CONNECTIONS']}` and `wrk -t{k['THREADS']} -c{k['CONNECTIONS']}` "
                "against the same target, one sink (the ceiling path), sending the same packets: wrk replays "
                "the load generator's own pool of bodies (`logdist loadgen --write-bodies`, "
                "`bench/peers/replay.lua`). **wrk, own packets** is wrk with the table's packets above "
                "(121-byte lines, 64 bodies per thread on the mix) for reference.", "",
                "| workload | wrk req/s | loadgen req/s | loadgen / wrk | wrk msg/s | loadgen msg/s | "
                "wrk CPU % | loadgen CPU % | wrk p99 ms | loadgen p99 ms | wrk, own packets req/s |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for g in loadgen:
            same = "" if g["same_packets"] else " (wrk's own packets)"
            out.append(f"| {g['workload']}{same} | {g['wrk_requests_per_s']:,.0f} | {g['loadgen_requests_per_s']:,.0f} | "
                       f"{fmt(g['ratio_requests'], '.2f')} | {g['wrk_messages_per_s']:,.0f} | "
                       f"{g['loadgen_messages_per_s']:,.0f} | {g['wrk_cpu_pct']:.0f} | {g['loadgen_cpu_pct']:.0f} | "
                       f"{g['wrk_p99_ms']:.2f} | {g['loadgen_p99_ms']:.2f} | "
                       f"{fmt(g['wrk_own_requests_per_s'], ',.0f')} |")
        out.append("")
    if protocols:
        out += ["## Ingest protocols", "",
                "logdist (`--ack delivered`: decoded, mapped, routed by messages, delivered) against nginx "
                "passing the same bodies opaque (target: 1.2x), and shippers' JSON against logdist's own NDJSON "
                "on the same records (target: 0.7x). A protocol the distributor does not serve shows its "
                "failed requests.", "",
                "| workload | logdist msg/s | nginx msg/s | x nginx | x native NDJSON | logdist failed requests |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for p in protocols:
            out.append(f"| {p['workload']} | {fmt(p['logdist_messages_per_s'], ',.0f')} | "
                       f"{fmt(p['nginx_messages_per_s'], ',.0f')} | {fmt(p['vs_nginx'], '.2f')} | "
                       f"{fmt(p.get('vs_native_ndjson'), '.2f')} | {fmt(p['logdist_failed_requests'], 'd')} |")
        out.append("")
    out += ["## Environment", ""] + [f"- {key}: {val}" for key, val in env.items()] + [""]
    return "\n".join(out)


def version(args):
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=10)
        return (p.stdout + p.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not found"


def environment(count_only, has_validate):
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    commit = version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "cpu": f"{cpu}, {CORES} cores",
        "memory": version(["sh", "-c", "free -h | awk '/Mem:/ {print $2}'"]),
        "kernel": platform.release(),
        "os": version(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "nginx": version(["nginx", "-v"]),
        "haproxy": version(["haproxy", "-v"]),
        "wrk": version(["wrk", "-v"]),
        "logdist": f"{version([str(BIN), '--version'])}, commit {commit}{' (uncommitted changes)' if dirty else ''}",
        "rustc": version(["rustc", "--version"]),
        "python": platform.python_version(),
        "sinks_count_only": count_only,
        "distributor_has_validate": has_validate,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def main():
    k = knobs()
    if not BIN.exists():
        sys.exit(f"compare: {BIN} is missing: run `cargo build --release -p logdist` (bench/compare.sh does)")
    for tool in ("wrk", "nginx", "haproxy"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            sys.exit(f"compare: {tool} is not installed (bench/compare.sh installs it with apt-get)")
    count_only = tool_has(["analyzer"], "--count-only")
    has_validate = tool_has(["distributor"], "--validate")
    cases = all_cases(has_validate)
    if k["CASES"]:
        wanted = [c.strip() for c in k["CASES"].split(",") if c.strip()]
        unknown = [c for c in wanted if c not in cases]
        if unknown:
            sys.exit(f"compare: unknown case(s) {', '.join(unknown)}; known: {', '.join(cases)}")
        cases = {n: c for n, c in cases.items() if n in wanted}
    workloads = [w.strip() for w in k["WORKLOADS"].split(",") if w.strip()]
    for w in workloads:
        try:
            protocol, _ = protocol_of(w)
        except ValueError:
            sys.exit(f"compare: unknown workload {w!r} (PROTOCOL:N wants a number of records)")
        if protocol is not None and protocol not in PROTOCOLS:
            sys.exit(f"compare: unknown protocol in {w!r}; known: {', '.join(PROTOCOLS)}")
        if protocol is None and w != "mix" and not w.isdigit():
            sys.exit(f"compare: unknown workload {w!r} (a number of messages, mix, or PROTOCOL:N)")
    order = list(cases)
    env_knobs = " ".join(f"{n}={shlex.quote(str(k[n]))}" for n in
                         ("RUNS", "DURATION", "WARMUP", "CONNECTIONS", "THREADS", "CASES", "WORKLOADS", "MIX",
                          "PACED", "PACED_AGENTS")
                         if os.environ.get(n) is not None)
    command = f"{env_knobs + ' ' if env_knobs else ''}bench/compare.sh{' ' if sys.argv[1:] else ''}{shlex.join(sys.argv[1:])}"

    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="logdist-compare-"))
    procs = Procs()
    # Ctrl-C and SIGTERM both end the run through the `finally` below, which stops every
    # process started (SIGINT explicitly: a shell may have started us with it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("compare: terminated"))
    runs = []
    per_case = k["warmup_s"] + k["duration_s"] + 1.5
    total = k["RUNS"] * sum(runs_case(name, w) for w in workloads for name in order)
    print(f"compare: {total} case runs of about {per_case:.0f} s each (~{total * per_case / 60:.0f} min); "
          f"scratch {scratch}", file=sys.stderr, flush=True)
    try:
        sinks = [free_port() for _ in WEIGHTS]
        sink_procs = []
        for i, p in enumerate(sinks, 1):
            args = [str(BIN), "analyzer", "--id", str(i), "--no-register", "--listen", f"127.0.0.1:{p}"]
            if count_only:
                args.append("--count-only")
            sink_procs.append(procs.start(args, scratch / f"analyzer{i}.log"))
        for i, (p, s) in enumerate(zip(sinks, sink_procs), 1):
            wait_up(s, f"http://127.0.0.1:{p}/health", f"analyzer {i}")
        n = 0
        for rnd in range(k["RUNS"]):
            for w in workloads:
                shift = rnd % len(order)
                for name in order[shift:] + order[:shift]:
                    if not runs_case(name, w):
                        continue
                    n += 1
                    try:
                        r = run_case(procs, k, name, cases[name], w, sinks, sink_procs, scratch)
                    except RuntimeError as e:
                        if protocol_of(w)[0] is None:
                            raise
                        # A protocol the distributor built does not serve (yet) must not
                        # cost the rest of the run.
                        print(f"[{n}/{total}] round {rnd + 1} {name:18} {w:>4}: FAILED, skipped: {e}",
                              file=sys.stderr, flush=True)
                        continue
                    r["round"] = rnd + 1
                    runs.append(r)
                    c = r["cpu_pct"]
                    err = f", max share err {100 * r['max_share_error']:.2f} pp" if r["max_share_error"] is not None else ""
                    print(f"[{n}/{total}] round {rnd + 1} {name:18} {w:>4}: {r['messages_per_s']:>12,.0f} msg/s, "
                          f"{r['requests_per_s']:>9,.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                          f"CPU {c['client']:.0f}/{c['proxy']:.0f}/{c['sinks']:.0f}% (other {c['other']:.0f}%)"
                          f"{err}, failed {r['failed_requests']}", file=sys.stderr, flush=True)
    except BaseException:
        print(f"compare: the logs are kept in {scratch}", file=sys.stderr)
        raise
    finally:
        procs.stop_all()
    if os.environ.get("KEEP_SCRATCH") != "1":
        shutil.rmtree(scratch, ignore_errors=True)

    rows, loadgen, protocols = summarize(runs, order, workloads)
    env = environment(count_only, has_validate)
    md = markdown(rows, loadgen, k, env, command, protocols)
    (RESULTS / "compare.md").write_text(md)
    (RESULTS / "compare.json").write_text(json.dumps({
        "command": command, "knobs": {n: k[n] for n in ("RUNS", "DURATION", "WARMUP", "CONNECTIONS", "THREADS",
                                                        "CASES", "WORKLOADS", "MIX", "MIX_BODIES",
                                                        "PACED", "PACED_AGENTS")},
        "environment": env, "weights": WEIGHTS, "summary": rows, "loadgen_vs_wrk": loadgen,
        "protocols": protocols, "runs": runs,
    }, indent=2))
    print(md)
    print(f"compare: wrote {RESULTS / 'compare.md'} and {RESULTS / 'compare.json'}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        sys.exit(str(e))
    except KeyboardInterrupt:
        sys.exit("compare: interrupted")

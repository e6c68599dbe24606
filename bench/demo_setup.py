"""Driver of bench/demo-setup.sh: see that script. Standard library only."""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "logdist"
RESULTS = ROOT / "bench" / "results"
RUNS = int(os.environ.get("RUNS", "3"))
DURATION = os.environ.get("DURATION", "10s")
AGENTS = os.environ.get("AGENTS", "64")
SIZES = [int(s) for s in os.environ.get("SIZES", "1 100").split()]
WEIGHTS = [0.5, 0.3, 0.2]
# logdist and nginx driven by `logdist loadgen`; then logdist driven by wrk, which shows
# whether the load generator is what limits the numbers.
PEERS = ("logdist", "nginx", "logdist, wrk as client")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def wait_up(url, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def peak_rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def child_pids(pid):
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]
    except FileNotFoundError:
        return []


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_logdist(port, analyzers, scratch):
    args = [str(BIN), "distributor", "--listen", f"127.0.0.1:{port}"]
    for i, (aport, w) in enumerate(zip(analyzers, WEIGHTS), 1):
        args += ["--analyzer", f"analyzer_{i}=http://127.0.0.1:{aport}@{w}"]
    log = open(scratch / "distributor.log", "ab")
    proc = subprocess.Popen(args, stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
    return proc, lambda: [proc.pid]


def start_nginx(port, analyzers, scratch):
    servers = "\n".join(
        f"    server 127.0.0.1:{p} weight={int(w * 10)};" for p, w in zip(analyzers, WEIGHTS)
    )
    conf = scratch / "nginx.conf"
    conf.write_text(f"""
worker_processes auto;
daemon off;
pid {scratch}/nginx.pid;
error_log {scratch}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_max_body_size 16m;
  client_body_buffer_size 1m;
  client_body_temp_path {scratch}/body;
  proxy_temp_path {scratch}/proxy;
  upstream analyzers {{
{servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://analyzers;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
""")
    log = open(scratch / "nginx.log", "ab")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(scratch)], stdout=log, stderr=log)
    return proc, lambda: [proc.pid] + child_pids(proc.pid)


def analyzer_counts(analyzers):
    return [get_json(f"http://127.0.0.1:{p}/stats")["messages"] for p in analyzers]


def run_loadgen(port, size, report):
    subprocess.run(
        [str(BIN), "loadgen", "--target", f"http://127.0.0.1:{port}", "--agents", AGENTS,
         "--packet-size", str(size), "--duration", DURATION, "--report", str(report), "--quiet"],
        check=True, stdout=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"},
    )
    return json.loads(report.read_text())


def run_wrk(port, size, scratch):
    """wrk -t2 with the same connections and duration, posting one fixed packet."""
    line = ('{"timestamp":1700000000000,"severity":"INFO","source":"api",'
            '"message":"GET /v1/users/42 200 in 12ms","host":"web-1"}\n')
    script = scratch / f"post-{size}.lua"
    script.write_text('wrk.method = "POST"\n'
                      'wrk.headers["Content-Type"] = "application/x-ndjson"\n'
                      f"wrk.body = [[{line * size}]]\n")
    secs = DURATION.rstrip("s")
    out = subprocess.run(["wrk", "-t2", f"-c{AGENTS}", f"-d{secs}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}/packets"], check=True, capture_output=True, text=True).stdout
    def ms(label):
        for l in out.splitlines():
            parts = l.split()
            if parts and parts[0] == label:
                v = parts[1]
                scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
                for unit in ("us", "ms", "s"):
                    if v.endswith(unit):
                        return float(v[: -len(unit)]) * scale[unit]
        return float("nan")
    failed = 0
    for l in out.splitlines():
        if "Non-2xx" in l or "Socket errors" in l:
            failed += sum(int(x) for x in l.replace(",", " ").split() if x.isdigit())
    return {"duration_s": float(secs), "messages_per_s": float("nan"), "packets_failed": failed,
            "latency_ms": {"p50": ms("50%"), "p99": ms("99%")}}


def run_case(peer, size, analyzers, scratch):
    port = free_port()
    start = start_nginx if peer == "nginx" else start_logdist
    proc, pids = start(port, analyzers, scratch)
    try:
        wait_up(f"http://127.0.0.1:{port}/health")
        before = analyzer_counts(analyzers)
        if peer == "logdist, wrk as client":
            loadgen = run_wrk(port, size, scratch)
        else:
            loadgen = run_loadgen(port, size, scratch / f"report-{peer}-{size}.json")
        time.sleep(0.3)
        after = analyzer_counts(analyzers)
        rss = peak_rss_kib(pids())
    finally:
        stop(proc)
    delivered = [a - b for a, b in zip(after, before)]
    total = sum(delivered)
    return {
        "peer": peer,
        "packet_size": size,
        "messages_delivered": total,
        "messages_per_s": total / loadgen["duration_s"],
        "acked_per_s": loadgen["messages_per_s"],
        "failed_packets": loadgen["packets_failed"],
        "p50_ms": loadgen["latency_ms"]["p50"],
        "p99_ms": loadgen["latency_ms"]["p99"],
        "peak_rss_mib": rss / 1024,
        "shares": [d / total if total else 0 for d in delivered],
    }


def main():
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="logdist-bench-"))
    analyzers = [free_port() for _ in WEIGHTS]
    sinks = [
        subprocess.Popen(
            [str(BIN), "analyzer", "--id", str(i), "--listen", f"127.0.0.1:{p}", "--no-register"],
            stdout=subprocess.DEVNULL, stderr=open(scratch / f"analyzer{i}.log", "ab"),
            env={**os.environ, "RUST_LOG": "warn"},
        )
        for i, p in enumerate(analyzers, 1)
    ]
    results = []
    try:
        for p in analyzers:
            wait_up(f"http://127.0.0.1:{p}/health")
        for run in range(RUNS):
            for size in SIZES:
                # Rotate the order each round: position in the sequence alone can move a
                # result by a few percent on a shared 2-core machine.
                for peer in PEERS[run % len(PEERS):] + PEERS[:run % len(PEERS)]:
                    r = run_case(peer, size, analyzers, scratch)
                    r["run"] = run
                    results.append(r)
                    print(f"run {run + 1}/{RUNS} {peer:8} {size:>4} msg/packet: "
                          f"{r['messages_per_s']:>12,.0f} msg/s delivered, p99 {r['p99_ms']:.2f} ms, "
                          f"peak RSS {r['peak_rss_mib']:.1f} MiB, failed {r['failed_packets']}",
                          file=sys.stderr, flush=True)
    finally:
        for s in sinks:
            stop(s)

    rows = []
    for size in SIZES:
        for peer in PEERS:
            rs = [r for r in results if r["peer"] == peer and r["packet_size"] == size]
            med = lambda k: statistics.median(r[k] for r in rs)
            shares = [statistics.median(r["shares"][i] for r in rs) for i in range(len(WEIGHTS))]
            rows.append({"peer": peer, "packet_size": size, "messages_per_s": med("messages_per_s"),
                         "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
                         "peak_rss_mib": max(r["peak_rss_mib"] for r in rs), "shares": shares,
                         "failed_packets": sum(r["failed_packets"] for r in rs)})
    header = (f"Demo setup on {os.cpu_count()} cores: `logdist loadgen --agents {AGENTS}` (or `wrk -t2 "
              f"-c{AGENTS}`) -> peer -> 3 x `logdist analyzer` (weights 0.5/0.3/0.2), {DURATION} per "
              f"case, median of {RUNS} interleaved runs (the order rotates each round); messages counted at the "
              f"analyzers.\n\n")
    table = ["| peer | msg/packet | msg/s delivered | p50 ms | p99 ms | peak RSS MiB | message shares | failed |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in rows:
        shares = " / ".join(f"{s:.3f}" for s in r["shares"])
        table.append(f"| {r['peer']} | {r['packet_size']} | {r['messages_per_s']:,.0f} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['peak_rss_mib']:.1f} | {shares} | {r['failed_packets']} |")
    md = header + "\n".join(table) + "\n"
    (RESULTS / "demo-setup.md").write_text(md)
    (RESULTS / "demo-setup.json").write_text(json.dumps({"summary": rows, "runs": results}, indent=2))
    print(md)


if __name__ == "__main__":
    main()

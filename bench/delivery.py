"""Driver of bench/delivery.sh: see that script. Standard library only (the Flask analyzers
of the `message-original` case need flask and requests)."""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from demo_setup import BIN, RESULTS, ROOT, free_port, get_json, stop, wait_up

RUNS = int(os.environ.get("RUNS", "3"))
DURATION = os.environ.get("DURATION", "10s")
AGENTS = os.environ.get("AGENTS", "16")
SIZE = int(os.environ.get("SIZE", "100"))
# Relative weights of the three analyzers: 0.5/0.3/0.2.
WEIGHTS = [5, 3, 2]
# Every case: a name, the delivery protocol the distributor speaks, and the peer.
ALL_CASES = ["logdist", "message", "otlp", "elasticsearch", "loki", "forward", "message-original"]
CASES = [c for c in os.environ.get("CASES", ",".join(ALL_CASES)).split(",") if c]
ORIGINAL = ROOT / "crates" / "logdist" / "tests" / "python" / "original_analyzer.py"
# logdist's own Message Process peers answer slowly on a 2-core machine beside 16 agents'
# load; the Flask ones far more so. Give each delivery time.
TIMEOUT = "20s"


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far (/proc/PID/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_peers(case, scratch):
    """Three analyzers that speak the case's protocol, each with the URL to give it."""
    peers = []
    for i, _ in enumerate(WEIGHTS, 1):
        port = free_port()
        log = open(scratch / f"{case}-peer{i}.log", "ab")
        if case == "message-original":
            proc = subprocess.Popen(
                [sys.executable, str(ORIGINAL)], stdout=log, stderr=log,
                env={**os.environ, "ANALYZER_ID": str(i), "PORT": str(port),
                     # It registers with a distributor that is not there yet; the bench
                     # names it with --analyzer instead, as the README's migration says.
                     "DISTRIBUTOR_URL": "http://127.0.0.1:9"})
            url = f"http://127.0.0.1:{port}"
        elif case == "forward":
            # The analyzer takes Fluent forward on a TCP port of its own.
            port = free_port()
            proc = subprocess.Popen(
                [str(BIN), "analyzer", "--id", str(i), "--listen", f"127.0.0.1:{free_port()}",
                 "--no-register", "--count-only", "--forward-listen", f"127.0.0.1:{port}"],
                stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
            url = f"tcp://127.0.0.1:{port}"
        else:
            proc = subprocess.Popen(
                [str(BIN), "analyzer", "--id", str(i), "--listen", f"127.0.0.1:{port}",
                 "--no-register", "--count-only"],
                stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
            url = f"http://127.0.0.1:{port}"
        peers.append((proc, port, url))
    return peers


def wait_listening(port, timeout=20):
    deadline = time.time() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline:
                raise RuntimeError(f"nothing listens on {port}")
            time.sleep(0.05)


def run_case(case, scratch):
    protocol = "message" if case == "message-original" else case
    peers = start_peers(case, scratch)
    port = free_port()
    args = [str(BIN), "distributor", "--listen", f"127.0.0.1:{port}", "--delivery-timeout", TIMEOUT]
    for i, ((_, _, url), weight) in enumerate(zip(peers, WEIGHTS), 1):
        args += ["--analyzer", f"a{i}={url}@{weight};protocol={protocol}"]
    log = open(scratch / f"{case}-distributor.log", "ab")
    dist = subprocess.Popen(args, stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
    try:
        for _, p, _ in peers:
            wait_listening(p)
        wait_up(f"http://127.0.0.1:{port}/health")
        deadline = time.time() + 20
        while sum(a["state"] == "online" for a in get_json(f"http://127.0.0.1:{port}/analyzer/stats")) < 3:
            if time.time() > deadline:
                raise RuntimeError(f"{case}: the analyzers did not come online")
            time.sleep(0.1)
        report_path = scratch / f"{case}-report.json"
        cpu_before = cpu_seconds(dist.pid)
        peers_before = sum(cpu_seconds(p.pid) for p, _, _ in peers)
        subprocess.run(
            [str(BIN), "loadgen", "--target", f"http://127.0.0.1:{port}", "--agents", AGENTS,
             "--packet-size", str(SIZE), "--duration", DURATION, "--report", str(report_path), "--quiet"],
            check=True, stdout=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
        cpu = cpu_seconds(dist.pid) - cpu_before
        peers_cpu = sum(cpu_seconds(p.pid) for p, _, _ in peers) - peers_before
        report = json.loads(report_path.read_text())
    finally:
        stop(dist)
        for p, _, _ in peers:
            stop(p)
    # With --ack delivered (the default), a message acknowledged to the load generator
    # was acknowledged by an analyzer: delivered.
    messages = report["messages_acked"]
    seconds = report["duration_s"]
    return {
        "case": case,
        "messages_per_s": messages / seconds,
        "distributor_cpu_us_per_message": cpu / messages * 1e6 if messages else None,
        "distributor_cpu_percent": cpu / seconds * 100,
        "peers_cpu_percent": peers_cpu / seconds * 100,
        "p99_ms": report["latency_ms"]["p99"],
        "failed_packets": report["packets_failed"],
    }


def main():
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="logdist-delivery-bench-"))
    results = []
    for run in range(RUNS):
        # Rotate the order each round, so that position does not pass for a difference.
        order = CASES[run % len(CASES):] + CASES[:run % len(CASES)]
        for case in order:
            try:
                r = run_case(case, scratch)
            except Exception as e:  # a protocol the binary does not speak, say
                print(f"run {run + 1}/{RUNS} {case}: failed: {e}", file=sys.stderr, flush=True)
                continue
            r["run"] = run
            results.append(r)
            print(f"run {run + 1}/{RUNS} {case:16} {r['messages_per_s']:>12,.0f} msg/s, "
                  f"distributor {r['distributor_cpu_us_per_message']:.2f} us CPU/msg, "
                  f"p99 {r['p99_ms']:.1f} ms, failed {r['failed_packets']}", file=sys.stderr, flush=True)
    keys = ("messages_per_s", "distributor_cpu_us_per_message", "distributor_cpu_percent",
            "peers_cpu_percent", "p99_ms")
    rows = []
    for case in CASES:
        rs = [r for r in results if r["case"] == case]
        if rs:
            rows.append({"case": case, **{k: statistics.median(r[k] for r in rs) for k in keys},
                         "failed_packets": sum(r["failed_packets"] for r in rs)})
    base = next((r for r in rows if r["case"] == "logdist"), None)
    header = (f"One distributor, three analyzers weighted 0.5/0.3/0.2 speaking each delivery protocol, "
              f"`logdist loadgen --agents {AGENTS} --packet-size {SIZE}` for {DURATION}, median of "
              f"{RUNS} runs in rotating order on {os.cpu_count()} cores. Peers: `logdist analyzer "
              f"--count-only` (which takes every protocol), or for `message-original` three Flask "
              f"analyzers as the original project's. x NDJSON: messages/s against the `logdist` row; "
              f"CPU x: the distributor's CPU per message against the `logdist` row.\n\n")
    table = ["| protocol | messages/s | x NDJSON | distributor CPU us/msg | CPU x | distributor CPU % | peers CPU % | p99 ms | failed |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ratio = f"{r['messages_per_s'] / base['messages_per_s']:.2f}" if base else "-"
        cpu_ratio = (f"{r['distributor_cpu_us_per_message'] / base['distributor_cpu_us_per_message']:.2f}"
                     if base and r["distributor_cpu_us_per_message"] else "-")
        table.append(f"| {r['case']} | {r['messages_per_s']:,.0f} | {ratio} | "
                     f"{r['distributor_cpu_us_per_message']:.2f} | {cpu_ratio} | {r['distributor_cpu_percent']:.0f} | "
                     f"{r['peers_cpu_percent']:.0f} | {r['p99_ms']:.1f} | {r['failed_packets']} |")
    md = header + "\n".join(table) + "\n"
    (RESULTS / "delivery.md").write_text(md)
    (RESULTS / "delivery.json").write_text(json.dumps({"summary": rows, "runs": results}, indent=2))
    print(md)


if __name__ == "__main__":
    main()

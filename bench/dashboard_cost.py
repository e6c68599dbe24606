"""Driver of bench/dashboard-cost.sh: see that script. Standard library only."""

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from delivery import cpu_seconds, wait_listening
from demo_setup import BIN, RESULTS, free_port, get_json, stop, wait_up

RUNS = int(os.environ.get("RUNS", "3"))
DURATION = os.environ.get("DURATION", "10s")
RATE = os.environ.get("RATE", "10000")
VIEWERS = int(os.environ.get("VIEWERS", "3"))
WEIGHTS = [5, 3, 2]


def run_case(viewers, scratch):
    peers = []
    for i, _ in enumerate(WEIGHTS, 1):
        port = free_port()
        peers.append((subprocess.Popen(
            [str(BIN), "analyzer", "--id", str(i), "--listen", f"127.0.0.1:{port}", "--no-register", "--count-only"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port))
    port = free_port()
    argv = [str(BIN), "distributor", "--listen", f"127.0.0.1:{port}"]
    for i, ((_, p), w) in enumerate(zip(peers, WEIGHTS), 1):
        argv += ["--analyzer", f"a{i}=http://127.0.0.1:{p}@{w}"]
    dist = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(scratch / "distributor.log", "ab"),
                            env={**os.environ, "RUST_LOG": "warn"})
    streams = []
    try:
        for _, p in peers:
            wait_listening(p)
        wait_up(f"http://127.0.0.1:{port}/health")
        while sum(a["state"] == "online" for a in get_json(f"http://127.0.0.1:{port}/analyzer/stats")) < 3:
            time.sleep(0.1)
        # Each viewer is an open event stream, read as a browser reads it (curl -N).
        for _ in range(viewers):
            streams.append(subprocess.Popen(["curl", "-sN", f"http://127.0.0.1:{port}/dashboard/events"],
                                            stdout=subprocess.DEVNULL))
        time.sleep(1.5)
        before = cpu_seconds(dist.pid)
        subprocess.run([str(BIN), "loadgen", "--target", f"http://127.0.0.1:{port}", "--agents", "16",
                        "--packet-size", "100", "--rate", RATE, "--duration", DURATION, "--quiet"],
                       check=True, stdout=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
        cpu = cpu_seconds(dist.pid) - before
    finally:
        for s in streams:
            stop(s)
        stop(dist)
        for p, _ in peers:
            stop(p)
    return cpu / float(DURATION.rstrip("s")) * 100


def main():
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="logdist-dashboard-cost-"))
    closed, opened = [], []
    for run in range(RUNS):
        for viewers in ((0, VIEWERS) if run % 2 == 0 else (VIEWERS, 0)):
            cpu = run_case(viewers, scratch)
            (opened if viewers else closed).append(cpu)
            print(f"run {run + 1}/{RUNS}, {viewers} viewers: distributor {cpu:.1f}% CPU", file=sys.stderr, flush=True)
    a, b = statistics.median(closed), statistics.median(opened)
    md = (f"One distributor, three `logdist analyzer --count-only`, `logdist loadgen --agents 16 --packet-size 100 "
          f"--rate {RATE}` ({int(RATE) * 100:,} messages/s offered) for {DURATION}; the distributor's CPU with no "
          f"dashboard open and with {VIEWERS} open event streams (`curl -N /dashboard/events`), median of {RUNS} "
          f"alternated runs on {os.cpu_count()} cores.\n\n"
          f"| dashboards open | distributor CPU % (of one core) |\n| ---: | ---: |\n"
          f"| 0 | {a:.1f} |\n| {VIEWERS} | {b:.1f} |\n\nDifference: {b - a:+.1f} points of one core "
          f"({(b - a) / a * 100:+.1f}%).\n")
    (RESULTS / "dashboard-cost.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

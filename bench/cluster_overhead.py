"""Driver of bench/cluster-overhead.sh: see that script. Standard library only."""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from demo_setup import AGENTS, BIN, DURATION, RESULTS, RUNS, SIZES, WEIGHTS, free_port, get_json, peak_rss_kib, run_loadgen, stop, wait_up


def redis_stat(port, field):
    """A counter from INFO stats (the reply is one bulk string: `$LEN` then the text)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"INFO stats\r\n")
        reply = s.makefile("rb")
        length = int(reply.readline()[1:])
        text = reply.read(length).decode()
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":")[1])
    raise RuntimeError(f"{field} not in INFO stats")


def start_distributor(port, redis_port, scratch):
    args = [str(BIN), "distributor", "--listen", f"127.0.0.1:{port}"]
    if redis_port:
        args += ["--redis", f"redis://127.0.0.1:{redis_port}/0"]
    log = open(scratch / "distributor.log", "ab")
    return subprocess.Popen(args, stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})


def start_analyzers(dport, scratch):
    procs = []
    for i, w in enumerate(WEIGHTS, 1):
        p = free_port()
        procs.append((subprocess.Popen(
            [str(BIN), "analyzer", "--id", str(i), "--weight", str(w), "--listen", f"127.0.0.1:{p}",
             "--distributor", f"http://127.0.0.1:{dport}", "--heartbeat", "1s"],
            stdout=subprocess.DEVNULL, stderr=open(scratch / f"analyzer{i}.log", "ab"),
            env={**os.environ, "RUST_LOG": "warn"}), p))
    return procs


def run_case(mode, size, redis_port, scratch):
    port = free_port()
    dist = start_distributor(port, redis_port if mode == "--redis" else None, scratch)
    analyzers = start_analyzers(port, scratch)
    try:
        wait_up(f"http://127.0.0.1:{port}/health")
        deadline = time.time() + 15
        while sum(a["state"] == "online" for a in get_json(f"http://127.0.0.1:{port}/analyzer/stats")) < 3:
            if time.time() > deadline:
                raise RuntimeError("analyzers did not register")
            time.sleep(0.05)
        before = [get_json(f"http://127.0.0.1:{p}/stats")["messages"] for _, p in analyzers]
        commands_before = redis_stat(redis_port, "total_commands_processed")
        report = run_loadgen(port, size, scratch / f"report-{mode}-{size}.json")
        commands = redis_stat(redis_port, "total_commands_processed") - commands_before - 1
        time.sleep(0.3)
        after = [get_json(f"http://127.0.0.1:{p}/stats")["messages"] for _, p in analyzers]
        rss = peak_rss_kib([dist.pid])
    finally:
        # Analyzers first, so that they deregister and leave no lease behind.
        for a, _ in analyzers:
            stop(a)
        stop(dist)
    delivered = sum(after) - sum(before)
    return {"mode": mode, "packet_size": size, "messages_per_s": delivered / report["duration_s"],
            "p99_ms": report["latency_ms"]["p99"], "failed_packets": report["packets_failed"],
            "redis_commands_per_s": commands / report["duration_s"], "peak_rss_mib": rss / 1024}


def main():
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="logdist-cluster-bench-"))
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=open(scratch / "redis.log", "ab"), stderr=subprocess.STDOUT)
    results = []
    try:
        time.sleep(0.3)
        for run in range(RUNS):
            for size in SIZES:
                # Alternate which mode goes first, so that position in the sequence
                # does not pass for a difference between the modes.
                modes = ("memory", "--redis") if run % 2 == 0 else ("--redis", "memory")
                for mode in modes:
                    r = run_case(mode, size, redis_port, scratch)
                    r["run"] = run
                    results.append(r)
                    print(f"run {run + 1}/{RUNS} {mode:8} {size:>4} msg/packet: {r['messages_per_s']:>12,.0f} msg/s, "
                          f"p99 {r['p99_ms']:.2f} ms, {r['redis_commands_per_s']:.1f} Redis commands/s, "
                          f"failed {r['failed_packets']}", file=sys.stderr, flush=True)
    finally:
        stop(redis)
    rows = []
    for size in SIZES:
        med = {}
        for mode in ("memory", "--redis"):
            rs = [r for r in results if r["mode"] == mode and r["packet_size"] == size]
            med[mode] = {k: statistics.median(r[k] for r in rs) for k in ("messages_per_s", "p99_ms", "redis_commands_per_s", "peak_rss_mib")}
        overhead = 1 - med["--redis"]["messages_per_s"] / med["memory"]["messages_per_s"]
        rows.append({"packet_size": size, "memory": med["memory"], "redis": med["--redis"], "overhead": overhead})
    header = (f"One distributor, `logdist loadgen --agents {AGENTS}`, three registered analyzers, {DURATION} per "
              f"case, median of {RUNS} interleaved runs (the order of the two modes alternates) on "
              f"{os.cpu_count()} cores.\n\n")
    table = ["| msg/packet | in memory msg/s | with --redis msg/s | overhead | p99 ms (memory / redis) | Redis commands/s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        table.append(f"| {r['packet_size']} | {r['memory']['messages_per_s']:,.0f} | {r['redis']['messages_per_s']:,.0f} | "
                     f"{r['overhead'] * 100:+.1f}% | {r['memory']['p99_ms']:.2f} / {r['redis']['p99_ms']:.2f} | "
                     f"{r['redis']['redis_commands_per_s']:.1f} |")
    md = header + "\n".join(table) + "\n"
    (RESULTS / "cluster-overhead.md").write_text(md)
    (RESULTS / "cluster-overhead.json").write_text(json.dumps({"summary": rows, "runs": results}, indent=2))
    print(md)


if __name__ == "__main__":
    main()

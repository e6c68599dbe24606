"""Driver of bench/spool.sh: see that script. Standard library only."""

import json
import os
import shutil
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
AGENTS = os.environ.get("AGENTS", "16")
SIZE = int(os.environ.get("SIZE", "100"))
WEIGHTS = [5, 3, 2]
CASES = {
    "memory": [],
    "spool-10ms": ["--spool-fsync", "10ms"],
    "spool-always": ["--spool-fsync", "always"],
    "spool-os": ["--spool-fsync", "os"],
}


def written_bytes(pid):
    """Bytes the process caused to be written to storage (/proc/PID/io)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("logdist_spool_fsync_seconds_sum"):
            out["fsync_s"] = float(line.split()[-1])
        elif line.startswith("logdist_spool_fsync_seconds_count"):
            out["fsyncs"] = int(float(line.split()[-1]))
    return out


def run_case(case, scratch, spool_root):
    peers = []
    for i, _ in enumerate(WEIGHTS, 1):
        port = free_port()
        peers.append((subprocess.Popen(
            [str(BIN), "analyzer", "--id", str(i), "--listen", f"127.0.0.1:{port}", "--no-register", "--count-only"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port))
    port = free_port()
    spool = spool_root / case
    shutil.rmtree(spool, ignore_errors=True)
    argv = [str(BIN), "distributor", "--listen", f"127.0.0.1:{port}", "--ack", "accepted"]
    if case != "memory":
        argv += ["--spool", str(spool)] + CASES[case]
    for i, ((_, p), w) in enumerate(zip(peers, WEIGHTS), 1):
        argv += ["--analyzer", f"a{i}=http://127.0.0.1:{p}@{w}"]
    dist = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(scratch / "distributor.log", "ab"),
                            env={**os.environ, "RUST_LOG": "warn"})
    report_path = scratch / f"{case}-report.json"
    try:
        for _, p in peers:
            wait_listening(p)
        wait_up(f"http://127.0.0.1:{port}/health")
        while sum(a["state"] == "online" for a in get_json(f"http://127.0.0.1:{port}/analyzer/stats")) < 3:
            time.sleep(0.1)
        cpu_before, written_before = cpu_seconds(dist.pid), written_bytes(dist.pid)
        subprocess.run([str(BIN), "loadgen", "--target", f"http://127.0.0.1:{port}", "--agents", AGENTS,
                        "--packet-size", str(SIZE), "--duration", DURATION, "--report", str(report_path),
                        "--quiet"],
                       check=True, stdout=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
        cpu = cpu_seconds(dist.pid) - cpu_before
        written = written_bytes(dist.pid) - written_before
        spooled = metrics(port)
    finally:
        stop(dist)
        for p, _ in peers:
            stop(p)
        shutil.rmtree(spool, ignore_errors=True)
    report = json.loads(report_path.read_text())
    messages, seconds = report["messages_acked"], report["duration_s"]
    packets = max(report["packets_acked"], 1)
    return {
        "case": case,
        "messages_per_s": messages / seconds,
        "distributor_cpu_us_per_message": cpu / max(messages, 1) * 1e6,
        "written_mb_per_s": written / seconds / 1e6,
        "fsyncs_per_s": spooled.get("fsyncs", 0) / seconds,
        "fsync_us_per_packet": spooled.get("fsync_s", 0.0) / packets * 1e6,
        "p99_ms": report["latency_ms"]["p99"],
        "failed_packets": report["packets_failed"],
    }


def main():
    cases = os.environ.get("CASES", ",".join(CASES)).split(",")
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="logdist-spool-bench-"))
    spool_root = Path(os.environ.get("SPOOL_DIR", tempfile.mkdtemp(prefix="logdist-spool-", dir="/var/tmp")))
    runs = {c: [] for c in cases}
    for run in range(RUNS):
        for case in cases[run % len(cases):] + cases[:run % len(cases)]:
            r = run_case(case, scratch, spool_root)
            runs[case].append(r)
            print(f"run {run + 1}/{RUNS} {case:13} {r['messages_per_s']:>12,.0f} msg/s, "
                  f"{r['distributor_cpu_us_per_message']:.2f} us/msg CPU, {r['written_mb_per_s']:.0f} MB/s written, "
                  f"{r['fsyncs_per_s']:.0f} fsync/s, p99 {r['p99_ms']:.1f} ms", file=sys.stderr, flush=True)
    keys = ("messages_per_s", "distributor_cpu_us_per_message", "written_mb_per_s", "fsyncs_per_s",
            "fsync_us_per_packet", "p99_ms", "failed_packets")
    medians = [{"case": c, **{k: statistics.median(r[k] for r in runs[c]) for k in keys}} for c in cases]
    base = next((m for m in medians if m["case"] == "memory"), None)
    table = ["| case | msg/s answered 202 | × in memory | distributor CPU per msg | written MB/s | fsyncs/s | "
             "fsync time per packet | p99 ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m in medians:
        ratio = f"{m['messages_per_s'] / base['messages_per_s']:.2f}" if base else "-"
        table.append(f"| {m['case']} | {m['messages_per_s']:,.0f} | {ratio} | "
                     f"{m['distributor_cpu_us_per_message']:.2f} µs | {m['written_mb_per_s']:.0f} | "
                     f"{m['fsyncs_per_s']:.0f} | {m['fsync_us_per_packet']:.1f} µs | {m['p99_ms']:.1f} |")
    md = (f"One distributor (`--ack accepted`), three `logdist analyzer --count-only` at 0.5/0.3/0.2, "
          f"`logdist loadgen --agents {AGENTS} --packet-size {SIZE}` for {DURATION}, as fast as it goes; "
          f"spool in {spool_root}; median of {RUNS} rounds in rotating order on {os.cpu_count()} cores.\n\n"
          + "\n".join(table) + "\n")
    (RESULTS / "spool.md").write_text(md)
    (RESULTS / "spool.json").write_text(json.dumps({"runs": runs, "medians": medians}, indent=2))
    print(md)


if __name__ == "__main__":
    main()

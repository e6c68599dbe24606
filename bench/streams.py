"""Driver of bench/streams.sh: see that script. Standard library only."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from delivery import cpu_seconds, wait_listening
from demo_setup import BIN, RESULTS, free_port, get_json, stop, wait_up

RUNS = int(os.environ.get("RUNS", "3"))
DURATION = os.environ.get("DURATION", "10s")
AGENTS = os.environ.get("AGENTS", "16")
SIZE = int(os.environ.get("SIZE", "100"))
WEIGHTS = [5, 3, 2]
ALL_CASES = ["ndjson", "syslog-tcp", "forward", "forward-noack"]
CASES = [c for c in os.environ.get("CASES", ",".join(ALL_CASES)).split(",") if c]


def delivered(ports):
    return sum(get_json(f"http://127.0.0.1:{p}/stats")["messages"] for p in ports)


def run_case(case, scratch):
    peers = []
    for i, _ in enumerate(WEIGHTS, 1):
        port = free_port()
        proc = subprocess.Popen(
            [str(BIN), "analyzer", "--id", str(i), "--listen", f"127.0.0.1:{port}", "--no-register", "--count-only"],
            stdout=subprocess.DEVNULL, stderr=open(scratch / f"{case}-peer{i}.log", "ab"),
            env={**os.environ, "RUST_LOG": "warn"})
        peers.append((proc, port))
    port, stream = free_port(), free_port()
    args = [str(BIN), "distributor", "--listen", f"127.0.0.1:{port}",
            "--syslog-listen", f"tcp://127.0.0.1:{stream}" if case == "syslog-tcp" else None,
            "--forward-listen", f"127.0.0.1:{stream}" if case.startswith("forward") else None]
    # Drop the flags of the listeners this case does not use.
    argv = []
    it = iter(args)
    for a in it:
        if a in ("--syslog-listen", "--forward-listen"):
            value = next(it)
            if value is not None:
                argv += [a, value]
        else:
            argv.append(a)
    for i, ((_, p), w) in enumerate(zip(peers, WEIGHTS), 1):
        argv += ["--analyzer", f"a{i}=http://127.0.0.1:{p}@{w}"]
    dist = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(scratch / f"{case}-distributor.log", "ab"),
                            env={**os.environ, "RUST_LOG": "warn"})
    try:
        for _, p in peers:
            wait_listening(p)
        wait_up(f"http://127.0.0.1:{port}/health")
        if case != "ndjson":
            wait_listening(stream)
        deadline = time.time() + 20
        while sum(a["state"] == "online" for a in get_json(f"http://127.0.0.1:{port}/analyzer/stats")) < 3:
            if time.time() > deadline:
                raise RuntimeError(f"{case}: the analyzers did not come online")
            time.sleep(0.1)
        ports = [p for _, p in peers]
        before = delivered(ports)
        cpu_before = cpu_seconds(dist.pid)
        load = [str(BIN), "loadgen", "--target", f"http://127.0.0.1:{port}", "--agents", AGENTS,
                "--packet-size", str(SIZE), "--duration", DURATION, "--quiet",
                "--report", str(scratch / f"{case}-report.json")]
        if case == "syslog-tcp":
            load += ["--protocol", "syslog-tcp", "--syslog-target", f"127.0.0.1:{stream}"]
        elif case.startswith("forward"):
            load += ["--protocol", case, "--forward-target", f"127.0.0.1:{stream}"]
        started = time.time()
        subprocess.run(load, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
        # What was sent is delivered within a moment (syslog has no acknowledgement to
        # wait for): count at the analyzers once their totals stop moving.
        # The time it took to deliver the rest counts: syslog's sender writes ahead of
        # delivery, and what it wrote last is delivered after it stops.
        ended = time.time()
        last, settled = -1, ended
        while True:
            now = delivered(ports)
            if now == last:
                break
            if last >= 0:
                settled = time.time()
            last = now
            time.sleep(0.5)
        seconds = float(DURATION.rstrip("s")) + max(0.0, settled - ended - 0.5)
        cpu = cpu_seconds(dist.pid) - cpu_before
        messages = last - before
        report = json.loads((scratch / f"{case}-report.json").read_text())
    finally:
        stop(dist)
        for p, _ in peers:
            stop(p)
    return {"case": case, "messages_per_s": messages / seconds,
            "distributor_cpu_us_per_message": cpu / messages * 1e6 if messages else None,
            "messages_acked_per_s": report.get("messages_acked", 0) / report["duration_s"],
            "elapsed_s": time.time() - started}


def main():
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="logdist-streams-bench-"))
    results = []
    for run in range(RUNS):
        order = CASES[run % len(CASES):] + CASES[:run % len(CASES)]
        for case in order:
            try:
                r = run_case(case, scratch)
            except Exception as e:
                print(f"run {run + 1}/{RUNS} {case}: failed: {e}", file=sys.stderr, flush=True)
                continue
            r["run"] = run
            results.append(r)
            print(f"run {run + 1}/{RUNS} {case:14} {r['messages_per_s']:>12,.0f} msg/s delivered, "
                  f"{r['distributor_cpu_us_per_message']:.2f} us distributor CPU/msg", file=sys.stderr, flush=True)
    rows = []
    for case in CASES:
        rs = [r for r in results if r["case"] == case]
        if rs:
            rows.append({"case": case, **{k: statistics.median(r[k] for r in rs)
                                          for k in ("messages_per_s", "distributor_cpu_us_per_message")}})
    base = next((r for r in rows if r["case"] == "ndjson"), None)
    md = (f"One distributor, three `logdist analyzer --count-only` weighted 0.5/0.3/0.2, `logdist loadgen "
          f"--agents {AGENTS} --packet-size {SIZE}` for {DURATION} over each ingest protocol, messages "
          f"counted at the analyzers, over the run and the time the rest took to arrive after it; median of {RUNS} runs in rotating order on {os.cpu_count()} cores.\n\n"
          "| ingest | messages/s delivered | x NDJSON | distributor CPU us/msg |\n| --- | ---: | ---: | ---: |\n")
    for r in rows:
        ratio = f"{r['messages_per_s'] / base['messages_per_s']:.2f}" if base else "-"
        md += f"| {r['case']} | {r['messages_per_s']:,.0f} | {ratio} | {r['distributor_cpu_us_per_message']:.2f} |\n"
    (RESULTS / "streams.md").write_text(md)
    (RESULTS / "streams.json").write_text(json.dumps({"summary": rows, "runs": results}, indent=2))
    print(md)


if __name__ == "__main__":
    main()

"""What idle keep-alive connections cost the distributor: VmRSS with N connections open,
each of which sent one request and read its answer, and VmRSS once they have closed.
Standard library only.

    ulimit -n 20000
    python3 bench/idle_connections.py target/debug/logdist 2000 10000

For each N and each kind of request (`packets`: POST /packets, answered on the express
lane; `health`: GET /health, served by hyper after a handoff; `none`: connected, nothing
sent), a fresh distributor is started, and it prints VmRSS before, with the N connections
open, and 2 s after they closed, in KiB, and the growth per connection in bytes.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

PACKET = b'{"timestamp":1,"severity":"INFO","source":"bench","message":"idle"}\n'
REQUESTS = {
    "packets": b"POST /packets HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
    + b"Content-Length: %d\r\n\r\n" % len(PACKET)
    + PACKET,
    "health": b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    "none": None,
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def read_answer(s):
    """Reads one answer with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("closed before the answer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += s.recv(4096)
    return head.split(b"\r\n")[0]


def settle(pid):
    """VmRSS once it has stopped moving (two equal readings 200 ms apart, at most 3 s)."""
    last = rss_kib(pid)
    for _ in range(15):
        time.sleep(0.2)
        now = rss_kib(pid)
        if now == last:
            break
        last = now
    return last


def run(binary, n, kind):
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [binary, "distributor", "--listen", f"127.0.0.1:{port}", "--header-timeout", "300s",
             "--max-connections", str(n + 100)],
            stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
        try:
            deadline = time.time() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.05)
            # Warm up: one of each request on its own connection.
            for request in filter(None, REQUESTS.values()):
                with socket.create_connection(("127.0.0.1", port)) as s:
                    s.sendall(request)
                    read_answer(s)
            before = settle(proc.pid)
            conns = []
            status = None
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port))
                if REQUESTS[kind]:
                    s.sendall(REQUESTS[kind])
                    status = read_answer(s)
                conns.append(s)
            held = settle(proc.pid)
            for s in conns:
                s.close()
            time.sleep(2)
            after = settle(proc.pid)
            per = (held - before) * 1024 / n
            print(f"{kind:8} N={n:6} answer={status!s:40} before={before} KiB  open={held} KiB"
                  f"  per connection={per:,.0f} B  after close={after} KiB", flush=True)
        finally:
            proc.terminate()
            proc.wait()


def main():
    binary = sys.argv[1]
    counts = [int(a) for a in sys.argv[2:]] or [2000, 10000]
    kinds = os.environ.get("KINDS", "packets health none").split()
    for n in counts:
        for kind in kinds:
            run(binary, n, kind)


if __name__ == "__main__":
    main()

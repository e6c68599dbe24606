"""Sends PackedForward chunks with acknowledgements to logdist's Fluent forward listener
and records which were acknowledged, for `crates/logdist/tests/forward.rs`'s SIGKILL test.

Written with the `msgpack` package over a plain socket rather than a Fluent logger
library, because the test must know exactly which records each acknowledged chunk held.
`--connections` threads each send `--chunks` chunks, one in flight at a time as Fluentd's
`require_ack_response` does. Chunk `seq` of connection `c` has the key
`{prefix}-{c}-{seq}`, which is also its `chunk` option, and its record `i` carries
`"msg_id": "{key}-{i}"`. A chunk that is not acknowledged within `--timeout` (or whose
connection closes) is sent again on a new connection, up to `--retries` times.

Writes `--trace` in the load generator's trace format (one NDJSON line per chunk:
`key`, `messages`, `outcome` "acked"|"failed", `status`, `failure`, `attempts`), so the
test balances it against the journals with `tests/common/ledger.rs`, and prints one JSON
line of totals. Exits 2 when msgpack is missing.
"""

import argparse
import json
import socket
import sys
import threading
import time


def frame(msgpack, tag, key, size):
    now = time.time()
    seconds, nanos = int(now), int((now % 1) * 1e9)
    event_time = msgpack.ExtType(0, seconds.to_bytes(4, "big") + nanos.to_bytes(4, "big"))
    entries = b"".join(
        msgpack.packb(
            [event_time, {"message": f"record {i}", "level": "info", "msg_id": f"{key}-{i}"}]
        )
        for i in range(size)
    )
    return msgpack.packb([tag, entries, {"chunk": key}], use_bin_type=True)


def read_ack(msgpack, sock, key, deadline):
    """Reads answers until `{"ack": key}`; raises on a close, a timeout or another ack."""
    unpacker = msgpack.Unpacker(raw=False)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no ack in time")
        sock.settimeout(left)
        data = sock.recv(4096)
        if not data:
            raise ConnectionError("closed without an ack")
        unpacker.feed(data)
        for answer in unpacker:
            if isinstance(answer, dict) and answer.get("ack") == key:
                return
            raise ValueError(f"unexpected answer {answer!r}")


def connection(msgpack, args, c, lines, lock):
    sock = None
    for seq in range(args.chunks):
        key = f"{args.prefix}-{c}-{seq}"
        size = 1 + (seq * 7 + c) % args.chunk_size
        body = frame(msgpack, args.tag, key, size)
        outcome, failure, attempts = "failed", None, 0
        while attempts <= args.retries:
            attempts += 1
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)
                sock.sendall(body)
                read_ack(msgpack, sock, key, time.monotonic() + args.timeout)
                outcome, failure = "acked", None
                break
            except (OSError, ValueError) as e:
                failure = f"{type(e).__name__}: {e}"
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(0.05)
        line = {
            "key": key,
            "messages": size,
            "outcome": outcome,
            "status": None,
            "failure": failure,
            "attempts": attempts,
        }
        with lock:
            lines.append(line)
        time.sleep(args.pause)
    if sock is not None:
        sock.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tag", default="acked")
    parser.add_argument("--prefix", default="fwd")
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--chunk-size", type=int, default=20)
    parser.add_argument("--pause", type=float, default=0.01)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--retries", type=int, default=30)
    parser.add_argument("--trace", required=True)
    args = parser.parse_args()
    try:
        import msgpack
    except ImportError as e:
        print(
            f"msgpack is missing ({e}); install it as .ci/run does",
            file=sys.stderr,
        )
        sys.exit(2)

    lines, lock = [], threading.Lock()
    threads = [
        threading.Thread(target=connection, args=(msgpack, args, c, lines, lock))
        for c in range(args.connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(args.trace, "w") as out:
        for line in lines:
            out.write(json.dumps(line) + "\n")
    acked = [l for l in lines if l["outcome"] == "acked"]
    print(
        json.dumps(
            {
                "chunks": len(lines),
                "acked": len(acked),
                "records_acked": sum(l["messages"] for l in acked),
                "retried": sum(1 for l in lines if l["attempts"] > 1),
            }
        )
    )


if __name__ == "__main__":
    main()

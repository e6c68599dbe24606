"""A Fluent forward client with the shared-key handshake, written to the Forward Protocol
Specification v1 with `msgpack`, `hashlib` and `socket` (and `ssl` with `--tls-ca`), for
`crates/logdist/tests/forward_auth.rs`. Python's `fluent-logger` (0.11.1) speaks neither
the handshake nor TLS, hence this client.

It reads the server's HELO, sends PING (`["PING", hostname, salt, hexdigest, "", ""]`,
`hexdigest` = sha512(salt + hostname + nonce + key)), reads PONG and, when it is true,
checks the server's digest (sha512(salt + server_hostname + nonce + key)). Then it sends
`--chunks` PackedForward chunks of `--size` records each, `{"message": "event {i}",
"seq": i}`, each with a `chunk` option, and waits for each one's ack.

`--mode no-ping` sends the first chunk where the PING belongs. With a PONG false (or
no PONG) it still sends the first chunk, as a client ignoring the answer would, and
reports whether the server acknowledged it and closed the connection.

Prints one JSON line: `helo` (its options, the nonce's length), `pong` (`[ok, reason,
server_hostname]`, or null), `pong_digest_ok`, `acked` (the chunk ids acknowledged),
`closed` (whether the server closed the connection within `--timeout` after the
handshake failed). Exits 2 when msgpack is missing.
"""

import argparse
import hashlib
import json
import os
import socket
import sys
import time


def digest(salt, hostname, nonce, key):
    return hashlib.sha512(salt + hostname.encode() + nonce + key.encode()).hexdigest()


def chunk(msgpack, tag, key, first, size):
    now = time.time()
    seconds, nanos = int(now), int((now % 1) * 1e9)
    event_time = msgpack.ExtType(0, seconds.to_bytes(4, "big") + nanos.to_bytes(4, "big"))
    entries = b"".join(
        msgpack.packb([event_time, {"message": f"event {i}", "seq": i}])
        for i in range(first, first + size)
    )
    return msgpack.packb([tag, entries, {"chunk": key, "size": size}], use_bin_type=True)


class Reader:
    """MessagePack values off a socket, one at a time, under a deadline."""

    def __init__(self, msgpack, sock, timeout):
        self.unpacker = msgpack.Unpacker(raw=False)
        self.sock = sock
        self.timeout = timeout

    def next(self):
        """The next value; None when the server closed the connection first."""
        deadline = time.monotonic() + self.timeout
        while True:
            for value in self.unpacker:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer in time")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except ConnectionResetError:
                data = b""
            if not data:
                return None
            self.unpacker.feed(data)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--shared-key", required=True)
    parser.add_argument("--hostname", default="python-client")
    parser.add_argument("--tls-ca", help="speak TLS, trusting this PEM CA; the name is localhost")
    parser.add_argument("--mode", choices=["ping", "no-ping"], default="ping")
    parser.add_argument("--tag", default="authapp")
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--size", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    try:
        import msgpack
    except ImportError as e:
        print(f"msgpack is missing ({e}); install it as .ci/run does", file=sys.stderr)
        sys.exit(2)

    sock = socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)
    if args.tls_ca:
        import ssl

        context = ssl.create_default_context(cafile=args.tls_ca)
        sock = context.wrap_socket(sock, server_hostname="localhost")
    reader = Reader(msgpack, sock, args.timeout)
    report = {"helo": None, "pong": None, "pong_digest_ok": False, "acked": [], "closed": False}

    helo = reader.next()
    if not (isinstance(helo, list) and len(helo) == 2 and helo[0] == "HELO"):
        raise SystemExit(f"expected HELO, got {helo!r}")
    options = helo[1]
    nonce = options["nonce"]
    if isinstance(nonce, str):
        nonce = nonce.encode("latin-1")
    report["helo"] = {
        "nonce_len": len(nonce),
        "auth": options.get("auth"),
        "keepalive": options.get("keepalive"),
    }

    first = chunk(msgpack, args.tag, "c0", 0, args.size)
    if args.mode == "ping":
        salt = os.urandom(16)
        ping = ["PING", args.hostname, salt, digest(salt, args.hostname, nonce, args.shared_key), "", ""]
        sock.sendall(msgpack.packb(ping, use_bin_type=True))
        pong = reader.next()
        if pong is not None:
            _, ok, reason, server_hostname, server_digest = pong
            report["pong"] = [ok, reason, server_hostname]
            report["pong_digest_ok"] = server_digest == digest(
                salt, server_hostname, nonce, args.shared_key
            )
    else:
        sock.sendall(first)
        pong = reader.next()
        if pong is not None:
            report["pong"] = pong[1:4]

    in_ = report["pong"] is not None and report["pong"][0] is True and report["pong_digest_ok"]
    if not in_:
        # A client ignoring the refusal: its chunk must not be taken.
        try:
            if args.mode == "ping":
                sock.sendall(first)
            while True:
                answer = reader.next()
                if answer is None:
                    report["closed"] = True
                    break
                if isinstance(answer, dict) and "ack" in answer:
                    report["acked"].append(answer["ack"])
        except TimeoutError:
            pass
        except OSError:
            report["closed"] = True
        print(json.dumps(report))
        return

    for c in range(args.chunks):
        key = f"c{c}"
        sock.sendall(first if c == 0 else chunk(msgpack, args.tag, key, c * args.size, args.size))
        answer = reader.next()
        if not (isinstance(answer, dict) and answer.get("ack") == key):
            raise SystemExit(f"chunk {key}: expected its ack, got {answer!r}")
        report["acked"].append(key)
    sock.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()

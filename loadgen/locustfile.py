"""Locust load for a logdist distributor.

For Locust users who want the web UI or Locust's own reports; `logdist loadgen` is the
faster, built-in load generator. Each simulated user is an agent that mostly posts NDJSON
packets to /packets and now and then a single message to /message/send, in the form the
original project used: {"timestamp":1020,"severity":"WARN","source":"app","message":"..."}.

    pip install locust
    locust -f loadgen/locustfile.py --host http://127.0.0.1:3000            # web UI on :8089
    locust -f loadgen/locustfile.py --host http://127.0.0.1:3000 \\
        --headless -u 50 -r 10 -t 30s                                         # no UI

Environment:
    LOGDIST_PACKET_SIZE  messages per packet, N or MIN..MAX (default 10)
    LOGDIST_WAIT         seconds a user waits between requests, S or MIN..MAX (default 0)
    LOGDIST_TOKEN        sent as "Authorization: Bearer TOKEN" when set
"""

import json
import os
import random
import time

from locust import FastHttpUser, between, task

SEVERITIES = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
SEVERITY_WEIGHTS = [15, 70, 10, 4, 1]

# Per source: usual lines, then error lines (used for ERROR and FATAL).
SOURCES = {
    "api": (
        ["GET {path} {status} in {ms}ms request_id={id}", "POST {path} {status} in {ms}ms user={user}"],
        ["upstream timeout after {ms}ms on {path} request_id={id}"],
    ),
    "auth": (
        ["user {user} logged in from {ip}", "token refreshed for user {user}, expires in {n}m"],
        ["invalid signature on token {id} from {ip}"],
    ),
    "db": (
        ["query took {ms}ms rows={n} plan={id}", "connection pool {n}/64 in use"],
        ["deadlock detected, transaction {id} rolled back"],
    ),
    "cache": (
        ["hit ratio {n}% over the last minute", "GET session:{id} miss"],
        ["lost connection to replica {ip}, retrying in {n}s"],
    ),
    "worker": (
        ["job {id} done in {ms}ms, {n} items", "picked job {id} from queue emails, attempt {n}"],
        ["job {id} failed after {n} attempts: exit status 1"],
    ),
    "nginx": (
        ['{ip} "GET {path} HTTP/1.1" {status} {n} {ms}ms'],
        ["connect() failed (111: Connection refused) while connecting to upstream {ip}"],
    ),
    "payments": (
        ["charge {id} authorized for user {user}, {n}.99 EUR", "refund {id} queued in {ms}ms"],
        ["charge {id} declined by issuer: insufficient funds"],
    ),
}
SOURCE_NAMES = list(SOURCES)
PATHS = ["/v1/orders", "/v1/orders/{id}", "/v1/users/{user}", "/v1/cart", "/healthz", "/v2/search"]
STATUSES = [200, 200, 200, 200, 201, 204, 304, 400, 404, 429, 500]


def parse_range(text, convert, name):
    """Parses "N" or "MIN..MAX" into (min, max); exits with a clear message if invalid."""
    try:
        low, _, high = text.partition("..")
        low = convert(low)
        high = convert(high) if high else low
    except ValueError:
        raise SystemExit(f"{name}={text!r}: expected N or MIN..MAX")
    if low < 0 or high < low:
        raise SystemExit(f"{name}={text!r}: expected 0 <= MIN <= MAX")
    return low, high


PACKET_SIZE = parse_range(os.environ.get("LOGDIST_PACKET_SIZE", "10"), int, "LOGDIST_PACKET_SIZE")
if PACKET_SIZE[0] < 1:
    raise SystemExit("LOGDIST_PACKET_SIZE: a packet needs at least one message")
WAIT = parse_range(os.environ.get("LOGDIST_WAIT", "0"), float, "LOGDIST_WAIT")
TOKEN = os.environ.get("LOGDIST_TOKEN")


def fill(template):
    """Fills {placeholders} with plausible values."""
    values = {
        "n": random.randint(1, 99),
        "ms": random.randint(1, 99) * random.randint(1, 19),
        "id": f"{random.getrandbits(48):012x}",
        "user": f"u{random.randint(1000, 99998)}",
        "status": random.choice(STATUSES),
        "ip": f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(0, 255)}",
    }
    values["path"] = random.choice(PATHS).format(**values)
    return template.format(**values)


def make_message(timestamp_ms):
    """One message with exactly the four fields of the original form."""
    severity = random.choices(SEVERITIES, SEVERITY_WEIGHTS)[0]
    source = random.choice(SOURCE_NAMES)
    usual, errors = SOURCES[source]
    template = random.choice(errors if severity in ("ERROR", "FATAL") else usual)
    return {"timestamp": timestamp_ms, "severity": severity, "source": source, "message": fill(template)}


def make_packet(size):
    """An NDJSON body of `size` messages (each line ends in a newline), plus a host field."""
    host = f"{random.choice(SOURCE_NAMES)}-{random.randint(1, 8)}"
    timestamp = int(time.time() * 1000) - random.randint(0, 5000)
    lines = []
    for _ in range(size):
        timestamp += random.randint(0, 19)
        message = make_message(timestamp)
        message["host"] = host
        lines.append(json.dumps(message, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


class LogAgent(FastHttpUser):
    """An agent shipping application and infrastructure logs to the distributor."""

    wait_time = between(*WAIT)

    def on_start(self):
        self.auth = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}

    def check(self, response, expected):
        """Counts 200/202 with the right message count as success, anything else as failure."""
        if response.status_code not in (200, 202):
            response.failure(f"HTTP {response.status_code}: {response.text[:200] if response.text else ''}")
            return
        try:
            acked = response.json().get("messages", expected)
        except (ValueError, AttributeError):
            acked = expected
        if acked != expected:
            response.failure(f"distributor counted {acked} messages, sent {expected}")
        else:
            response.success()

    @task(10)
    def send_packet(self):
        size = random.randint(*PACKET_SIZE)
        headers = {"Content-Type": "application/x-ndjson", **self.auth}
        with self.client.post(
            "/packets", data=make_packet(size), headers=headers, name="/packets", catch_response=True
        ) as response:
            self.check(response, size)

    @task(1)
    def send_message(self):
        body = json.dumps(make_message(int(time.time() * 1000)), separators=(",", ":"))
        headers = {"Content-Type": "application/json", **self.auth}
        with self.client.post(
            "/message/send", data=body, headers=headers, name="/message/send", catch_response=True
        ) as response:
            if response.status_code == 200:
                response.success()
            else:
                response.failure(f"HTTP {response.status_code}")

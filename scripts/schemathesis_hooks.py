"""Schemathesis hooks for scripts/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

1. Bodies go on the wire as the distributor reads them:
   - `application/x-ndjson`: openapi.yaml describes the packet as an array of messages;
     on the wire each message is one JSON line.
   - `Content-Encoding: gzip` / `x-gzip` / `zstd` (any case): the body is compressed with
     that encoding, so that a generated header and its body agree. Any other value is sent
     with the plain body (the distributor answers 415, or 400 for a non-ASCII value).

2. The test fixture stays usable and the run stays on this machine:
   - Registrations and deregistrations never touch the two analyzers the script starts
     (`analyzer_1`, `analyzer_2`): those ids are renamed. Otherwise one generated
     `{"id": "analyzer_1", ...}` would repoint or remove a real analyzer, and once both
     are gone every later /packets case is 503 (documented, so not a failure, but it
     would hide every other answer of the ingest endpoints).
   - The distributor delivers to and probes whatever is registered, and no traffic may
     leave the loopback interface. The script runs everything in a network namespace that
     has only `lo`, where nothing else can be reached, and registered URLs are sent as
     generated. When it cannot make one, it sets ST_REWRITE_URLS=1 and a registration's
     `url` is made to point at 127.0.0.1 (its port, credentials, path and query are kept,
     so the URL checks are still exercised; Schemathesis re-validates the changed body).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from typing import Any

import schemathesis
from schemathesis.transport.serialization import serialize_json

try:  # zstd bodies; without the package, zstd cases are sent uncompressed (and get 400).
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None

PROTECTED_IDS = {"analyzer_1", "analyzer_2"}
REWRITE_URLS = os.environ.get("ST_REWRITE_URLS") == "1"


def _encoding(case) -> str:
    headers = case.headers or {}
    for name, value in headers.items():
        if name.lower() == "content-encoding" and isinstance(value, str):
            return value.strip().lower()
    return ""


def _compress(case, data: bytes) -> bytes:
    encoding = _encoding(case)
    if encoding in ("gzip", "x-gzip"):
        return gzip.compress(data, mtime=0)  # same body, same bytes (Idempotency-Key)
    if encoding == "zstd" and zstandard is not None:
        return zstandard.ZstdCompressor().compress(data)
    return data


def _json_bytes(value: Any) -> bytes:
    prepared = serialize_json(value)
    if "data" in prepared:
        data = prepared["data"]
        return data if isinstance(data, bytes) else str(data).encode()
    # As `requests` would encode `json=`.
    return json.dumps(prepared["json"], allow_nan=False).encode()


@schemathesis.serializer("application/json")
def json_with_encoding(ctx, value):
    return _compress(ctx.case, _json_bytes(value))


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, list):
        data = b"".join(_json_bytes(item) + b"\n" for item in value)
    else:
        data = _json_bytes(value) + b"\n"
    return _compress(ctx.case, data)


_HTTP_URL = re.compile(r"^(http://|tcp://|tls://)([^/?#]*)(.*)$", re.DOTALL)


def _loopback(url: str) -> str:
    match = _HTTP_URL.match(url)
    if not match:
        return url  # not http://, tcp:// or tls://: rejected (400) without connecting
    scheme, authority, rest = match.groups()
    userinfo, _, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        port = hostport.partition("]")[2]
    else:
        port = hostport[hostport.index(":") :] if ":" in hostport else ""
    if not hostport or hostport == port:
        return url  # no host: rejected as such
    return f"{scheme}{userinfo + '@' if userinfo else ''}127.0.0.1{port}{rest}"


@schemathesis.hook
def before_call(context, case, kwargs):
    path = case.operation.path
    if path not in ("/analyzer/register", "/analyzer/deregister"):
        return
    body = case.body
    if not isinstance(body, dict):
        return
    if isinstance(body.get("id"), str) and body["id"] in PROTECTED_IDS:
        body["id"] = body["id"] + "_fuzzed"
    if REWRITE_URLS and path == "/analyzer/register" and isinstance(body.get("url"), str):
        body["url"] = _loopback(body["url"])

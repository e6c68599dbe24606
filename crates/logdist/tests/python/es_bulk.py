"""Sends documents to logdist's `_bulk` as an application does with the Python
`elasticsearch` client's `helpers.bulk`. Run by `crates/logdist/tests/bulk.rs`.

The client is used as its documentation shows: `Elasticsearch(url, <credentials>)`, then
`info()` and `ping()` (`GET /`, `HEAD /`), then `helpers.bulk(es, actions, index=...)`,
which sends the actions in chunks of `--chunk` by `PUT /{index}/_bulk`.

Document i (of `--docs`) is `{"message": "doc {i}", "@timestamp": ..., "level":
LEVELS[i % 5], "service": {"name": "checkout"}}` with `_id` i; every third is a `create`,
every seventh names its own `_index` ("app-logs"). The documents numbered in `--bad` are
sent as text that is not a JSON object instead. With `--others`, a `delete` and an `update`
follow.

Prints one JSON line: the `info()` answer, what `ping()` said, how many documents
`helpers.bulk` counted as taken, and the items it reported as failed. With credentials
refused, prints the status of the refusal. Exits 2 when the client is missing.
"""

import argparse
import json
import sys

LEVELS = ["debug", "info", "warning", "error", "critical"]
INSTALL = "python3 -m pip install elasticsearch==8.19.3 (as .ci/run does)"


def actions(args):
    bad = {int(i) for i in args.bad.split(",") if i}
    not_objects = ['["not", "an", "object"]', "not json at all", "42"]
    for i in range(args.docs):
        if i in bad:
            # A raw string is sent as the document as it is, under `{"index":{}}`.
            yield not_objects[i % len(not_objects)]
            continue
        doc = {
            "_id": i,
            "message": f"doc {i}",
            "@timestamp": f"2026-12-06T10:28:{i % 60:02d}.306Z",
            "level": LEVELS[i % len(LEVELS)],
            "service": {"name": "checkout"},
        }
        if i % 3 == 0:
            doc["_op_type"] = "create"
        if i % 7 == 0:
            doc["_index"] = "app-logs"
        yield doc
    if args.others:
        yield {"_op_type": "delete", "_id": "gone"}
        yield {"_op_type": "update", "_id": "changed", "doc": {"message": "x"}}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--bad", default="")
    parser.add_argument("--others", action="store_true")
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument(
        "--auth", choices=["none", "bearer", "apikey", "apikey-pair", "basic"], default="none"
    )
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    try:
        from elasticsearch import ApiError, Elasticsearch, helpers
    except ImportError as e:
        print(f"a Python package is missing ({e}); install it with: {INSTALL}", file=sys.stderr)
        sys.exit(2)

    credentials = {
        "none": {},
        "bearer": {"bearer_auth": args.token},
        "apikey": {"api_key": args.token},
        "apikey-pair": {"api_key": ("logdist-key", args.token)},
        "basic": {"basic_auth": ("elastic", args.token)},
    }[args.auth]
    es = Elasticsearch(args.url, request_timeout=30, **credentials)
    try:
        info = es.info().body
    except ApiError as e:
        print(json.dumps({"refused": e.meta.status}))
        return
    pinged = es.ping()
    taken, failed = helpers.bulk(
        es, actions(args), index="logs", chunk_size=args.chunk, raise_on_error=False
    )
    print(json.dumps({"info": info, "ping": pinged, "taken": taken, "failed": failed}))


if __name__ == "__main__":
    main()

"""An Elasticsearch stand-in for `crates/logdist/tests/elasticsearch_delivery.rs`, on the
standard library's `http.server`: an implementation of the bulk API independent of
logdist's (the request parsed with the `json` module, the answer written as
Elasticsearch's documentation gives it).

It listens on each PORT given (one process, so that what it remembers is shared: each
port stands for one Elasticsearch the distributor knows as a separate analyzer) and
serves:
- `GET /`: the root document Beats and Logstash check (`name`, `cluster_name`,
  `version.number`, `tagline`).
- `POST /_bulk` and `POST /{index}/_bulk`: NDJSON of action lines and documents. The
  answer is `{"took", "errors", "items"}`, an item per action in order, as
  `{"create": {"_index", "_id", "status", "result"}}` or, for a failed item,
  `{"create": {"_index", "status", "error": {"type", "reason"}}}`.

Each document it stores is appended to OUT as one JSON line:
`{"port": PORT, "index": INDEX, "doc": DOCUMENT}`. Each request is appended to
OUT.requests as `{"port", "path", "content_type", "items"}`.

Items fail by the document's `es_test` field:
- `"refuse"`: 400 `mapper_parsing_exception`, always (a document Elasticsearch cannot
  map).
- `"busy"`: 429 `es_rejected_execution_exception` the first time a document with its
  `seq` is seen at the first PORT; stored on any later try, and at once at the others
  (a node whose write queue was full for a moment).

Usage: python3 es_receiver.py --port PORT [--port PORT...] --out FILE
"""

import argparse
import json
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
# `seq`s of busy documents already refused once at the first port.
busy_seen = set()


def root(port):
    return {
        "name": f"es-test-{port}",
        "cluster_name": "logdist-test",
        "cluster_uuid": "x6oQ2rxCTmWzNfJp7sKFxg",
        "version": {
            "number": "8.17.0",
            "build_flavor": "default",
            "lucene_version": "9.12.0",
        },
        "tagline": "You Know, for Search",
    }


def bulk(lines, default_index, busy_port):
    """The items of a bulk body, and the documents to store as (index, document)."""
    items, stored = [], []
    at = 0
    while at < len(lines):
        action_line = json.loads(lines[at])
        ((action, meta),) = action_line.items()
        if action not in ("create", "index"):
            raise ValueError(f"action {action} is not expected from logdist")
        document = json.loads(lines[at + 1])
        at += 2
        index = meta.get("_index", default_index)
        kind = document.get("es_test") if isinstance(document, dict) else None
        if index is None:
            item = {
                "status": 400,
                "error": {
                    "type": "action_request_validation_exception",
                    "reason": "Validation Failed: 1: index is missing;",
                },
            }
        elif kind == "refuse":
            item = {
                "_index": index,
                "status": 400,
                "error": {
                    "type": "mapper_parsing_exception",
                    "reason": "failed to parse field [es_test] of type [long] in document",
                    "caused_by": {
                        "type": "illegal_argument_exception",
                        "reason": 'For input string: "refuse"',
                    },
                },
            }
        elif kind == "busy" and busy_port and document.get("seq") not in busy_seen:
            busy_seen.add(document.get("seq"))
            item = {
                "_index": index,
                "status": 429,
                "error": {
                    "type": "es_rejected_execution_exception",
                    "reason": "rejected execution of coordinating operation",
                },
            }
        else:
            item = {
                "_index": index,
                "_id": uuid.uuid4().hex,
                "_version": 1,
                "result": "created",
                "status": 201,
            }
            stored.append((index, document))
        items.append({action: item})
    return items, stored


def handler_for(port, busy_port, out, requests):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/":
                self.answer(200, root(port))
            else:
                self.answer(404, {"error": "no such path", "status": 404})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts == ["_bulk"]:
                default_index = None
            elif len(parts) == 2 and parts[1] == "_bulk":
                default_index = parts[0]
            else:
                self.answer(404, {"error": "no such path", "status": 404})
                return
            lines = [l for l in body.decode().split("\n") if l.strip()]
            with lock:
                try:
                    items, stored = bulk(lines, default_index, busy_port)
                except (ValueError, IndexError, KeyError) as e:
                    self.answer(400, {"error": {"type": "illegal_argument_exception", "reason": str(e)}, "status": 400})
                    return
                for index, document in stored:
                    out.write(json.dumps({"port": port, "index": index, "doc": document}) + "\n")
                out.flush()
                requests.write(json.dumps({
                    "port": port,
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "items": len(items),
                }) + "\n")
                requests.flush()
            errors = any(not 200 <= next(iter(i.values()))["status"] < 300 for i in items)
            self.answer(200, {"took": 2, "errors": errors, "items": items})

        def log_message(self, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, action="append", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = open(args.out, "a")
    requests = open(args.out + ".requests", "a")
    servers = []
    for n, port in enumerate(args.port):
        handler = handler_for(port, n == 0, out, requests)
        servers.append(ThreadingHTTPServer(("127.0.0.1", port), handler))
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"listening on {args.port}", flush=True)
    try:
        servers[0].serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()

"""An OTLP/HTTP logs receiver for `crates/logdist/tests/otlp_delivery.rs`: serves
`POST /v1/logs`, parses each `ExportLogsServiceRequest` with the `opentelemetry-proto`
package (an implementation independent of logdist's), and appends every log record it
parsed to OUT as one JSON line. Answers 200 with an empty `ExportLogsServiceResponse`.

A record whose body is the string REJECT_BODY (when given) is not written: the answer's
`partial_success` counts it as rejected, as a receiver that refuses a record does.

Usage: python3 otlp_receiver.py --port PORT --out FILE [--reject-body TEXT]
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
        ExportLogsServiceResponse,
    )
except ImportError as e:
    print(
        f"opentelemetry-proto is missing ({e}); install it as .ci/run does",
        file=sys.stderr,
    )
    sys.exit(2)


def any_value(value):
    """An AnyValue as JSON: bytes as hex, key-value lists as objects."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return key_values(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def key_values(pairs):
    return {kv.key: any_value(kv.value) for kv in pairs}


def records(request):
    """Every log record of an export, as a JSON object of what it carries."""
    for resource_logs in request.resource_logs:
        resource = key_values(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            for record in scope_logs.log_records:
                yield {
                    "resource": resource,
                    "scope": {
                        "name": scope.name,
                        "version": scope.version,
                        "attributes": key_values(scope.attributes),
                    },
                    "time_unix_nano": record.time_unix_nano,
                    "observed_time_unix_nano": record.observed_time_unix_nano,
                    "severity_number": record.severity_number,
                    "severity_text": record.severity_text,
                    "body": any_value(record.body) if record.HasField("body") else None,
                    "attributes": key_values(record.attributes),
                    "flags": record.flags,
                    "trace_id": record.trace_id.hex(),
                    "span_id": record.span_id.hex(),
                    "event_name": record.event_name,
                }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--reject-body")
    args = parser.parse_args()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/v1/logs":
                return self.answer(404, b"")
            if self.headers.get("Content-Type") != "application/x-protobuf":
                return self.answer(415, b"")
            request = ExportLogsServiceRequest()
            try:
                request.ParseFromString(body)
            except Exception as e:  # noqa: BLE001 (any parse error is the request's)
                return self.answer(400, str(e).encode())
            response = ExportLogsServiceResponse()
            lines = []
            for record in records(request):
                if args.reject_body is not None and record["body"] == args.reject_body:
                    response.partial_success.rejected_log_records += 1
                    response.partial_success.error_message = "a record this receiver refuses"
                else:
                    lines.append(json.dumps(record) + "\n")
            with lock, open(args.out, "a") as out:
                out.writelines(lines)
            self.answer(200, response.SerializeToString())

        def answer(self, status, body):
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()

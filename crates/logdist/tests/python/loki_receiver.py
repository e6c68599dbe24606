"""A Loki push receiver for `crates/logdist/tests/loki_delivery.rs`: serves `GET /ready`
and `POST /loki/api/v1/push` as Loki does, decodes each push with python-snappy and
Google's protobuf runtime (the `PushRequest` message classes are built here from a
`FileDescriptorProto` declaring Loki's push.proto, an implementation independent of
logdist's), and appends every entry it took to OUT as one JSON line:
`{"labels": {...}, "ts": <epoch ns>, "line": "...", "metadata": {...}}`.

Answers 204 with no body, as Loki does. A push with an entry whose line contains
REFUSE_LINE (when given) is answered 400 with a reason in plain text, as Loki answers an
entry it refuses (too old, say); as Loki, it keeps the push's other entries.

Usage: python3 loki_receiver.py --port PORT --out FILE [--refuse-line TEXT]
"""

import argparse
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import snappy
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf import timestamp_pb2
except ImportError as e:
    print(
        f"a Python package is missing ({e}); install python-snappy and protobuf as .ci/run does",
        file=sys.stderr,
    )
    sys.exit(2)


def push_request_class():
    """`logproto.PushRequest` of grafana/loki's pkg/push/push.proto, by descriptor."""
    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="pkg/push/push.proto", package="logproto", syntax="proto3"
    )
    proto.dependency.append("google/protobuf/timestamp.proto")
    declarations = {
        "PushRequest": [(1, "streams", f.TYPE_MESSAGE, True, ".logproto.StreamAdapter")],
        "StreamAdapter": [
            (1, "labels", f.TYPE_STRING, False, None),
            (2, "entries", f.TYPE_MESSAGE, True, ".logproto.EntryAdapter"),
            (3, "hash", f.TYPE_UINT64, False, None),
        ],
        "EntryAdapter": [
            (1, "timestamp", f.TYPE_MESSAGE, False, ".google.protobuf.Timestamp"),
            (2, "line", f.TYPE_STRING, False, None),
            (3, "structuredMetadata", f.TYPE_MESSAGE, True, ".logproto.LabelPairAdapter"),
        ],
        "LabelPairAdapter": [
            (1, "name", f.TYPE_STRING, False, None),
            (2, "value", f.TYPE_STRING, False, None),
        ],
    }
    for name, fields in declarations.items():
        message = proto.message_type.add(name=name)
        for number, field, kind, repeated, type_name in fields:
            message.field.add(
                name=field,
                number=number,
                type=kind,
                label=f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL,
                type_name=type_name,
            )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


PushRequest = push_request_class()

# One `name="value"` of a selector; the value a Go string literal.
LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_labels(text):
    """`{a="1", b="2"}` as a dict; ValueError when it is not a selector Loki reads."""
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"labels are not a selector: {text!r}")
    body, labels, at = text[1:-1], {}, 0
    while at < len(body.strip()):
        match = LABEL.match(body, at)
        if not match:
            raise ValueError(f"bad labels at {at}: {text!r}")
        name, value = match.group(1), match.group(2)
        if name in labels:
            raise ValueError(f"duplicate label name {name!r}: {text!r}")
        # Go's escapes that logdist writes (\" \\ \n \r \t \uXXXX) are JSON's.
        labels[name] = json.loads(f'"{value}"')
        at = match.end()
    if not labels:
        raise ValueError("a stream needs at least one label")
    return labels


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--refuse-line")
    args = parser.parse_args()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path == "/ready":
                return self.answer(200, b"ready\n")
            self.answer(404, b"404 page not found\n")

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/loki/api/v1/push":
                return self.answer(404, b"404 page not found\n")
            if self.headers.get("Content-Type") != "application/x-protobuf":
                return self.answer(415, b"unsupported content type\n")
            try:
                request = PushRequest()
                request.ParseFromString(snappy.uncompress(body))
                streams = [(parse_labels(s.labels), s) for s in request.streams]
            except Exception as e:  # noqa: BLE001 (any decoding error is the push's)
                return self.answer(400, f"could not read the push: {e}\n".encode())
            lines, refused = [], None
            for labels, stream in streams:
                for entry in stream.entries:
                    if args.refuse_line is not None and args.refuse_line in entry.line:
                        refused = (
                            f"entry for stream '{stream.labels}' has timestamp too old: "
                            f"{entry.timestamp.ToNanoseconds()}, oldest acceptable timestamp is: 0"
                        )
                        continue
                    record = {
                        "labels": labels,
                        "ts": entry.timestamp.ToNanoseconds(),
                        "line": entry.line,
                        "metadata": {p.name: p.value for p in entry.structuredMetadata},
                    }
                    lines.append(json.dumps(record) + "\n")
            with lock, open(args.out, "a") as out:
                out.writelines(lines)
            if refused is not None:
                return self.answer(400, (refused + "\n").encode())
            self.answer(204, b"")

        def answer(self, status, body):
            self.send_response(status)
            if body:
                self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()

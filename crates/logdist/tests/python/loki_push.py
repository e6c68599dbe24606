"""Sends log records to logdist's `POST /loki/api/v1/push` as Loki clients do. Run by
`crates/logdist/tests/loki.rs`.

- `--client handler`: an application logging through python-logging-loki's `LokiHandler`
  (JSON pushes, one record each), with `--tags` as its tags.
- `--client protobuf`: one push of every record as Promtail sends it, a `PushRequest`
  encoded by Google's protobuf runtime from a message class built from Loki's push.proto
  (no generated code) and snappy-compressed by python-snappy.

Record i is logged at level LEVELS[i % 5] with the message "record {i}". Prints one JSON
line: how many pushes were answered with which status. Exits 2 when a package is missing.
"""

import argparse
import json
import logging
import sys
import time

LEVELS = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
INSTALL = (
    "python3 -m pip install python-logging-loki==0.3.1 python-snappy==0.7.3 protobuf "
    "(as .ci/run does)"
)


def missing(e):
    print(f"a Python package is missing ({e}); install it with: {INSTALL}", file=sys.stderr)
    sys.exit(2)


def through_handler(args, tags):
    """Logs every record through LokiHandler; returns the statuses of its pushes."""
    try:
        import logging_loki
    except ImportError as e:
        missing(e)

    statuses = {}

    class Counting(logging_loki.LokiHandler):
        """The handler, with the answer to each push written down."""

        def emit(self, record):
            session = self.emitter.session
            post = session.post

            def counted(*a, **kw):
                answer = post(*a, **kw)
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                return answer

            session.post = counted
            try:
                super().emit(record)
            finally:
                session.post = post

    handler = Counting(url=args.url, tags=tags, version="1")
    logger = logging.getLogger("loki-test")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    for i in range(args.records):
        logger.log(LEVELS[i % len(LEVELS)], "record %d", i)
    return statuses


def push_request_class():
    """`logproto.PushRequest`, built from push.proto's declarations by descriptor."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf import timestamp_pb2

    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="push.proto", package="logproto", syntax="proto3"
    )
    proto.dependency.append("google/protobuf/timestamp.proto")

    def message(name, fields):
        m = proto.message_type.add(name=name)
        for number, (field, kind, label, type_name) in enumerate(fields, start=1):
            m.field.add(
                name=field, number=number, type=kind, label=label, type_name=type_name
            )

    one, many = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    message("PushRequest", [("streams", f.TYPE_MESSAGE, many, ".logproto.StreamAdapter")])
    message(
        "StreamAdapter",
        [
            ("labels", f.TYPE_STRING, one, None),
            ("entries", f.TYPE_MESSAGE, many, ".logproto.EntryAdapter"),
        ],
    )
    message(
        "EntryAdapter",
        [
            ("timestamp", f.TYPE_MESSAGE, one, ".google.protobuf.Timestamp"),
            ("line", f.TYPE_STRING, one, None),
            ("structuredMetadata", f.TYPE_MESSAGE, many, ".logproto.LabelPairAdapter"),
        ],
    )
    message(
        "LabelPairAdapter",
        [("name", f.TYPE_STRING, one, None), ("value", f.TYPE_STRING, one, None)],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


def through_protobuf(args, tags):
    """Sends every record in one snappy-compressed protobuf push; returns its status."""
    try:
        import requests
        import snappy

        PushRequest = push_request_class()
    except ImportError as e:
        missing(e)

    # Promtail's streams: one per set of labels, here one per level.
    streams = {}
    now = time.time_ns()
    for i in range(args.records):
        level = logging.getLevelName(LEVELS[i % len(LEVELS)]).lower()
        streams.setdefault(level, []).append((now + i, f"record {i}"))
    request = PushRequest()
    for level, entries in streams.items():
        labels = dict(tags, level=level)
        stream = request.streams.add(
            labels="{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
        )
        for ns, line in entries:
            entry = stream.entries.add(line=line)
            entry.timestamp.FromNanoseconds(ns)
    answer = requests.post(
        args.url,
        data=snappy.compress(request.SerializeToString()),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=30,
    )
    return {answer.status_code: 1}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="http://host:port/loki/api/v1/push")
    parser.add_argument("--client", choices=["handler", "protobuf"], required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--tags", default="{}", help="the stream labels, a JSON object")
    args = parser.parse_args()
    tags = json.loads(args.tags)
    send = through_handler if args.client == "handler" else through_protobuf
    statuses = send(args, tags)
    print(json.dumps({"statuses": {str(k): v for k, v in statuses.items()}}))


if __name__ == "__main__":
    main()

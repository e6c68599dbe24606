"""Sends log records to logdist's `POST /v1/logs` as an application does: through the
OpenTelemetry Python SDK, its OTLP/HTTP log exporter and the `logging` bridge
(`LoggingHandler`). Run by `crates/logdist/tests/otlp.rs`.

Record i is logged at level LEVELS[i % 5] with the message "record {i}". Prints one JSON
line: the size and result of every export the SDK made. Exits 2 when the SDK is missing.
"""

import argparse
import json
import logging
import sys

LEVELS = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]


def exporter_class(encoding):
    """The SDK's OTLP/HTTP log exporter for `encoding`, and its word for gzip."""
    if encoding == "protobuf":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        return OTLPLogExporter, Compression.Gzip
    from opentelemetry.exporter.otlp.common.http import Compression
    from opentelemetry.exporter.otlp.json.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter, Compression.GZIP


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True, help="http://host:port/v1/logs")
    parser.add_argument("--encoding", choices=["protobuf", "json"], required=True)
    parser.add_argument("--service", required=True, help="the resource's service.name")
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--token", help="sent as Authorization: Bearer TOKEN")
    parser.add_argument("--gzip", action="store_true", help="Content-Encoding: gzip")
    parser.add_argument(
        "--in-span",
        action="store_true",
        help="log inside a span (each record carries its trace and span ids, printed in "
        "the report) with the attributes record.index (i) and record.even",
    )
    args = parser.parse_args()

    try:
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
        from opentelemetry.sdk.resources import Resource

        OTLPLogExporter, gzip = exporter_class(args.encoding)
    except ImportError as e:
        print(
            f"the OpenTelemetry SDK is missing ({e}); install it with: python3 -m pip install "
            "opentelemetry-sdk==1.45.1 opentelemetry-exporter-otlp-proto-http==1.45.1 "
            "opentelemetry-exporter-otlp-json-http==0.66b1 (as .ci/run does)",
            file=sys.stderr,
        )
        sys.exit(2)

    class Counting(LogRecordExporter):
        """The exporter, with the size and result of each export written down."""

        def __init__(self, inner):
            self.inner = inner
            self.exports = []

        def export(self, batch):
            result = self.inner.export(batch)
            self.exports.append({"records": len(batch), "result": result.name})
            return result

        def force_flush(self, timeout_millis=30000):
            return True

        def shutdown(self):
            self.inner.shutdown()

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    options = {"endpoint": args.endpoint, "headers": headers, "timeout": 30}
    if args.gzip:
        options["compression"] = gzip
    exporter = Counting(OTLPLogExporter(**options))
    provider = LoggerProvider(resource=Resource.create({"service.name": args.service}))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))

    logger = logging.getLogger("otlp-test")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=provider))
    report = {}
    if args.in_span:
        from opentelemetry.sdk.trace import TracerProvider

        tracer = TracerProvider().get_tracer("otlp-test")
        with tracer.start_as_current_span("work") as span:
            context = span.get_span_context()
            report["trace_id"] = format(context.trace_id, "032x")
            report["span_id"] = format(context.span_id, "016x")
            for i in range(args.records):
                extra = {"record.index": i, "record.even": i % 2 == 0}
                logger.log(LEVELS[i % len(LEVELS)], "record %d", i, extra=extra)
    else:
        for i in range(args.records):
            logger.log(LEVELS[i % len(LEVELS)], "record %d", i)
    # Exports what is still batched, and waits for it.
    provider.shutdown()
    report["exports"] = exporter.exports
    print(json.dumps(report))


if __name__ == "__main__":
    main()

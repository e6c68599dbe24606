"""Sends events to logdist's Fluent forward listener with the Python `fluent-logger`
(Message mode, `[tag, time, record]`, over TCP). Run by `crates/logdist/tests/forward.rs`.

Event i is `{"message": "event {i}", "level": LEVELS[i % 5], "seq": i}` with the label
`app` (the tag `TAG.app`); with `--nanoseconds` its time is an EventTime, else integer
seconds. Prints one JSON line: how many `emit` calls succeeded and failed, with the last
error. Exits 2 when fluent-logger is missing.
"""

import argparse
import json
import sys

LEVELS = ["debug", "info", "warning", "error", "critical"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tag", default="pyapp")
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--nanoseconds", action="store_true")
    args = parser.parse_args()
    try:
        from fluent import sender
    except ImportError as e:
        print(
            f"fluent-logger is missing ({e}); install it with: "
            "python3 -m pip install fluent-logger==0.11.1 (as .ci/run does)",
            file=sys.stderr,
        )
        sys.exit(2)

    logger = sender.FluentSender(
        args.tag, host="127.0.0.1", port=args.port, nanosecond_precision=args.nanoseconds
    )
    sent, failed, error = 0, 0, None
    for i in range(args.events):
        record = {"message": f"event {i}", "level": LEVELS[i % 5], "seq": i}
        if logger.emit("app", record):
            sent += 1
        else:
            failed += 1
            error = repr(logger.last_error)
            logger.clear_last_error()
    logger.close()
    print(json.dumps({"sent": sent, "failed": failed, "error": error}))


if __name__ == "__main__":
    main()

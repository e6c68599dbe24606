"""A Fluent forward receiver for `crates/logdist/tests/forward_delivery.rs`, written to the
Forward Protocol Specification v1 with the `msgpack` package (an implementation
independent of logdist's): an asyncio TCP server (in TLS with --tls-cert/--tls-key) that
reads a stream of MessagePack arrays in any of the four modes,

    Message                  [tag, time, record, option?]
    Forward                  [tag, [[time, record], ...], option?]
    PackedForward            [tag, entries (bin or str of concatenated [time, record]), option?]
    CompressedPackedForward  the same, entries gzipped, option {"compressed": "gzip", ...}

appends every event to OUT as one JSON line {"tag", "time", "record", "mode"} (time as
{"seconds", "nanoseconds"} for an EventTime, the extension of type 0, or as an integer),
and answers {"ack": chunk} when the option carries a chunk, after the events are written.

Each connection that carries events is logged to standard error ("connection used").

With --withhold-acks it reads and records everything and never answers: a server that
has taken the events but does not acknowledge them.

Usage: python3 forward_receiver.py --port PORT --out FILE [--withhold-acks]
       [--tls-cert PEM --tls-key PEM]
"""

import argparse
import asyncio
import gzip
import json
import ssl
import struct
import sys

try:
    import msgpack
except ImportError as e:
    print(f"msgpack is missing ({e}); install it as .ci/run does", file=sys.stderr)
    sys.exit(2)


class EventTime:
    """The forward protocol's EventTime: ext type 0, seconds and nanoseconds, big-endian."""

    def __init__(self, seconds, nanoseconds):
        self.seconds = seconds
        self.nanoseconds = nanoseconds


def ext_hook(code, data):
    if code == 0 and len(data) == 8:
        seconds, nanoseconds = struct.unpack(">II", data)
        return EventTime(seconds, nanoseconds)
    return msgpack.ExtType(code, data)


def time_json(time):
    if isinstance(time, EventTime):
        return {"seconds": time.seconds, "nanoseconds": time.nanoseconds}
    if isinstance(time, int):
        return time
    raise ValueError(f"a time that is neither an integer nor an EventTime: {time!r}")


def unpacker():
    return msgpack.Unpacker(raw=False, ext_hook=ext_hook, strict_map_key=False)


def events(message):
    """The (mode, tag, time, record) events of one forward message, and its option."""
    if not isinstance(message, (list, tuple)) or len(message) < 2:
        raise ValueError(f"not a forward message: {message!r}")
    tag, second = message[0], message[1]
    if not isinstance(tag, str):
        raise ValueError(f"the tag is not a string: {tag!r}")
    if isinstance(second, (int, EventTime)):
        # Message mode.
        record = message[2]
        option = message[3] if len(message) > 3 else None
        return [("Message", tag, second, record)], option
    option = message[2] if len(message) > 2 else None
    if isinstance(second, (list, tuple)):
        return [("Forward", tag, t, r) for t, r in second], option
    if isinstance(second, (bytes, str)):
        entries = second.encode("latin-1") if isinstance(second, str) else second
        mode = "PackedForward"
        if isinstance(option, dict) and option.get("compressed") == "gzip":
            entries = gzip.decompress(entries)
            mode = "CompressedPackedForward"
        stream = unpacker()
        stream.feed(entries)
        return [(mode, tag, t, r) for t, r in stream], option
    raise ValueError(f"not a forward mode: {second!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--withhold-acks", action="store_true")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()

    async def serve(reader, writer):
        stream = unpacker()
        used = False
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                stream.feed(data)
                for message in stream:
                    if not used:
                        # One line a connection that carried events (a health check's
                        # connect carries none), for the test to count how many were kept.
                        print("connection used", file=sys.stderr, flush=True)
                        used = True
                    found, option = events(message)
                    lines = [
                        json.dumps(
                            {
                                "mode": mode,
                                "tag": tag,
                                "time": time_json(time),
                                "record": record,
                            }
                        )
                        + "\n"
                        for mode, tag, time, record in found
                    ]
                    with open(args.out, "a") as out:
                        out.writelines(lines)
                    chunk = option.get("chunk") if isinstance(option, dict) else None
                    if chunk is not None and not args.withhold_acks:
                        writer.write(msgpack.packb({"ack": chunk}))
                        await writer.drain()
        except (ValueError, msgpack.UnpackException) as e:
            # A client that breaks the protocol loses its connection, as in_forward does.
            print(f"closing a connection: {e}", file=sys.stderr, flush=True)
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def run():
        context = None
        if args.tls_cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(args.tls_cert, args.tls_key)
        server = await asyncio.start_server(serve, "127.0.0.1", args.port, ssl=context)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()

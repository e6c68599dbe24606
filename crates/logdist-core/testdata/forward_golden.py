"""Golden bytes of the Fluent forward protocol's four modes, made by Python's msgpack
(an encoder independent of logdist's), for crates/logdist-core/src/forward/decode_tests.rs.

Run: python3 forward_golden.py  (msgpack 1.1.2). Prints one `name hex` line per case;
the hex is pasted into the test's table.
"""
import gzip
import struct

import msgpack


def event_time(seconds, nanos):
    return msgpack.ExtType(0, struct.pack(">II", seconds, nanos))


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


T = event_time(1796552910, 306000001)
REC1 = {"message": "hello", "level": "warn"}
REC2 = {"log": "second", "service": "api", "n": 2}
entries = pack([T, REC1]) + pack([1796552911, REC2])

CASES = {
    # [tag, time, record, option?]
    "message_eventtime": pack(["app.web", T, REC1]),
    "message_int_chunk": pack(["app.web", 1796552910, REC1, {"chunk": "c1"}]),
    # [tag, [[time, record], ...], option?]
    "forward": pack(["app.web", [[T, REC1], [1796552911, REC2]], {"chunk": "c2", "size": 2}]),
    # [tag, bin of entries, option?]
    "packed_forward": pack(["app.web", entries, {"chunk": "c3", "size": 2}]),
    # the same, gzipped
    "compressed_packed_forward": pack(
        ["app.web", gzip.compress(entries, mtime=0), {"chunk": "c4", "size": 2, "compressed": "gzip"}]
    ),
    # a float time
    "message_float": pack(["app.web", 1796552910.5, {"msg": "f"}]),
}

for name, data in CASES.items():
    print(name, data.hex())

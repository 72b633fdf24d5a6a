#!/usr/bin/env python3
"""trace.py SOCKET ROOTFS: the raw frames of one unary call (version.v1
Version) and one stream (events Subscribe, seeing a container's
/tasks/exit), and of a stream the daemon ends with an error, as hex dumps.
docs/PROTOCOL.md's walk-through was captured with it."""

import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import berth  # noqa: E402
from berth import ttrpc  # noqa: E402

NAMES = {1: "request", 2: "response", 3: "data"}


def dump(direction, header, payload):
    length, sid, mtype, flags = ttrpc.HEADER.unpack(header)
    names = [n for bit, n in ((1, "remote-closed"), (2, "remote-open"), (4, "no-data")) if flags & bit]
    print("%s header %s  length=%d stream=%d type=%s flags=%s" % (
        "->" if direction == "send" else "<-", header.hex(" "), length, sid, NAMES.get(mtype, mtype),
        "|".join(names) or "0"))
    for i in range(0, len(payload), 16):
        chunk = payload[i:i + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        print("   %04x  %-47s  %s" % (i, chunk.hex(" "), text))
    sys.stdout.flush()


def main():
    sock, rootfs = sys.argv[1], sys.argv[2]
    print("## unary: version.v1 Version")
    with berth.Client(sock, namespace="default", trace=dump) as c:
        c.version()

    print("\n## stream: events Subscribe")
    with berth.Client(sock, namespace="trace") as c:
        sub = c.subscribe('topic=="/tasks/exit"')
        sub._conn._trace = dump  # the request frame was already sent
        got = threading.Event()

        def read():
            for env in sub:
                got.set()
                return
        t = threading.Thread(target=read)
        t.start()
        c.run("trace-1", rootfs, ["sh", "-c", "exit 3"])
        c.wait("trace-1")
        got.wait(10)
        sub.close()
        t.join()
        c.delete_task("trace-1")
        c.delete_container("trace-1")

    print("\n## stream ended by the daemon with an error: a filter that does not parse")
    conn = ttrpc.Connection(sock, trace=dump)
    try:
        from berth.gen import events_pb2
        req = events_pb2.SubscribeRequest(filters=["topic=="]).SerializeToString()
        list(conn.stream("berth.services.events.v1.Events", "Subscribe", req))
    except berth.Error as e:
        print("   (%s, code %d: %s)" % (type(e).__name__, e.code, e.message))
    finally:
        conn.close()


if __name__ == "__main__":
    main()

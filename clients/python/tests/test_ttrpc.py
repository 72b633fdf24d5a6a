"""The framing module without a daemon: the envelopes' encoding and a
server stream played by a fake server over a socket pair."""

import os
import socket
import tempfile
import threading
import unittest

from berth import ttrpc


class EnvelopeTest(unittest.TestCase):
    def test_request_round_trip(self):
        p = ttrpc.encode_request("s.v1.S", "M", b"\x0a\x01x", -1, [("berth-namespace", "ns")])
        self.assertEqual(ttrpc.decode_request(p), {
            "service": "s.v1.S", "method": "M", "payload": b"\x0a\x01x",
            "timeout_nano": (1 << 64) - 1, "metadata": [("berth-namespace", "ns")]})

    def test_response_status(self):
        # Response{status: {code: 5, message: "gone"}}
        status = b"\x08\x05\x12\x04gone"
        self.assertEqual(ttrpc.decode_response(b"\x0a" + bytes([len(status)]) + status),
                         (5, "gone", b""))
        self.assertIsInstance(ttrpc.error_for(5, "gone"), ttrpc.NotFound)
        self.assertEqual(ttrpc.error_for(99, "x").code, 99)

    def test_truncated(self):
        with self.assertRaises(ttrpc.ProtocolError):
            ttrpc.decode_response(b"\x12\x05ab")


class StreamTest(unittest.TestCase):
    def serve(self, frames):
        """A one-connection server that reads a request and writes frames."""
        d = tempfile.mkdtemp()
        path = os.path.join(d, "s.sock")
        l = socket.socket(socket.AF_UNIX)
        l.bind(path)
        l.listen(1)
        self.addCleanup(lambda: (l.close(), os.unlink(path), os.rmdir(d)))

        def run():
            conn, _ = l.accept()
            with conn:
                length, sid, _, _ = ttrpc.HEADER.unpack(conn.recv(ttrpc.HEADER_LENGTH, socket.MSG_WAITALL))
                conn.recv(length, socket.MSG_WAITALL)
                for t, flags, payload in frames:
                    conn.sendall(ttrpc.HEADER.pack(len(payload), sid, t, flags) + payload)
                conn.recv(1)
        threading.Thread(target=run, daemon=True).start()
        return path

    def test_ends_with_closed_no_data(self):
        path = self.serve([(ttrpc.TYPE_DATA, 0, b"a"), (ttrpc.TYPE_DATA, 0, b""),
                           (ttrpc.TYPE_DATA, ttrpc.FLAG_REMOTE_CLOSED | ttrpc.FLAG_NO_DATA, b"")])
        with ttrpc.Connection(path) as c:
            self.assertEqual(list(c.stream("s", "m", b"")), [b"a", b""])

    def test_ends_with_error_status(self):
        status = b"\x08\x0e\x12\x04busy"
        path = self.serve([(ttrpc.TYPE_DATA, 0, b"a"),
                           (ttrpc.TYPE_RESPONSE, 0, b"\x0a" + bytes([len(status)]) + status)])
        with ttrpc.Connection(path) as c:
            got = []
            with self.assertRaises(ttrpc.Unavailable) as cm:
                for m in c.stream("s", "m", b""):
                    got.append(m)
            self.assertEqual(got, [b"a"])
            self.assertEqual(cm.exception.message, "busy")


if __name__ == "__main__":
    unittest.main()

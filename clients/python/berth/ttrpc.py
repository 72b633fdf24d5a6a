"""ttrpc framing over a unix socket, as berthd speaks it (docs/PROTOCOL.md).

A frame is a 10-byte header and a payload:

    offset 0  uint32 big-endian  length of the payload (at most 4 MiB)
    offset 4  uint32 big-endian  stream id (odd: started by the client)
    offset 8  byte               type: 1 request, 2 response, 3 data
    offset 9  byte               flags: 1 remote closed, 2 remote open, 4 no data

A call is one request frame carrying a ttrpc Request and, for a unary call,
one response frame carrying a ttrpc Response. A server stream answers with
data frames, each one message, and ends with a data frame flagged
remote-closed and no-data (success) or a response frame (an error status).

The two envelopes (Request, Response and google.rpc.Status inside it) are
encoded here by hand: they are ttrpc's, not berth's, and have five fields.
The messages they carry are berth's and are encoded by the caller with the
classes protoc generated from proto/ (berth.gen).

One reader thread per Connection owns the socket's read side and hands each
frame to the queue of its stream; writers share the socket under a lock.
"""

import queue
import socket
import struct
import threading

HEADER = struct.Struct(">IIBB")  # length, stream id, type, flags
HEADER_LENGTH = HEADER.size  # 10 bytes
MESSAGE_LENGTH_MAX = 4 << 20  # 4 MiB, ttrpc's messageLengthMax

TYPE_REQUEST = 0x1
TYPE_RESPONSE = 0x2
TYPE_DATA = 0x3

FLAG_REMOTE_CLOSED = 0x1  # the sender sends nothing more on this stream
FLAG_REMOTE_OPEN = 0x2  # the sender (a client) will send data frames
FLAG_NO_DATA = 0x4  # the frame has no payload, not even an empty message


# Status codes (google.rpc.Code), the same numbers as gRPC's.
OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
ALREADY_EXISTS = 6
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
ABORTED = 10
OUT_OF_RANGE = 11
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
DATA_LOSS = 15
UNAUTHENTICATED = 16


class Error(Exception):
    """A call failed with a status; code is its google.rpc.Code."""

    code = UNKNOWN

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class Canceled(Error):
    code = CANCELLED


class Unknown(Error):
    code = UNKNOWN


class InvalidArgument(Error):
    code = INVALID_ARGUMENT


class DeadlineExceeded(Error):
    code = DEADLINE_EXCEEDED


class NotFound(Error):
    code = NOT_FOUND


class AlreadyExists(Error):
    code = ALREADY_EXISTS


class PermissionDenied(Error):
    code = PERMISSION_DENIED


class ResourceExhausted(Error):
    code = RESOURCE_EXHAUSTED


class FailedPrecondition(Error):
    code = FAILED_PRECONDITION


class NotImplemented_(Error):
    code = UNIMPLEMENTED


class Internal(Error):
    code = INTERNAL


class Unavailable(Error):
    code = UNAVAILABLE


class ConnectionClosed(Unavailable):
    """The connection ended before the call's answer arrived."""


class ProtocolError(Exception):
    """The peer sent something ttrpc does not allow."""


_ERRORS = {c.code: c for c in (Canceled, Unknown, InvalidArgument, DeadlineExceeded, NotFound,
                               AlreadyExists, PermissionDenied, ResourceExhausted,
                               FailedPrecondition, NotImplemented_, Internal, Unavailable)}


def error_for(code, message):
    """The Error subclass instance for a status code (Error for others)."""
    cls = _ERRORS.get(code)
    if cls is None:
        return Error(message, code)
    return cls(message)


# --- protobuf wire encoding of ttrpc's envelopes -----------------------------

def _varint(n):
    if n < 0:
        n += 1 << 64  # int64 on the wire: two's complement, 10 bytes
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_bytes(number, data):
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def encode_request(service, method, payload=b"", timeout_nano=0, metadata=()):
    """Request{service=1, method=2, payload=3, timeout_nano=4, metadata=5}."""
    out = _field_bytes(1, service.encode()) + _field_bytes(2, method.encode())
    if payload:
        out += _field_bytes(3, payload)
    if timeout_nano:
        out += _varint(4 << 3 | 0) + _varint(timeout_nano)
    for key, value in metadata:
        kv = _field_bytes(1, key.encode()) + _field_bytes(2, value.encode())
        out += _field_bytes(5, kv)
    return out


def _read_varint(buf, i):
    n = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ProtocolError("truncated or overlong varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def _fields(buf):
    """Yields (number, value) of a message: ints for varints, bytes else."""
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 2:
            n, i = _read_varint(buf, i)
            if i + n > len(buf):
                raise ProtocolError("truncated field")
            value, i = bytes(buf[i:i + n]), i + n
        elif wire == 1:
            value, i = bytes(buf[i:i + 8]), i + 8
        elif wire == 5:
            value, i = bytes(buf[i:i + 4]), i + 4
        else:
            raise ProtocolError("unsupported wire type %d" % wire)
        yield number, value


def decode_response(buf):
    """Response{status=1 (google.rpc.Status{code=1, message=2}), payload=2}
    as (code, message, payload)."""
    code, message, payload = OK, "", b""
    for number, value in _fields(buf):
        if number == 1:
            for n, v in _fields(value):
                if n == 1:
                    code = v & 0xFFFFFFFF
                    if code >= 1 << 31:
                        code -= 1 << 32
                elif n == 2:
                    message = v.decode("utf-8", "replace")
        elif number == 2:
            payload = value
    return code, message, payload


def decode_request(buf):
    """The inverse of encode_request, for tests and traces."""
    req = {"service": "", "method": "", "payload": b"", "timeout_nano": 0, "metadata": []}
    for number, value in _fields(buf):
        if number == 1:
            req["service"] = value.decode()
        elif number == 2:
            req["method"] = value.decode()
        elif number == 3:
            req["payload"] = value
        elif number == 4:
            req["timeout_nano"] = value
        elif number == 5:
            kv = dict(_fields(value))
            req["metadata"].append((kv.get(1, b"").decode(), kv.get(2, b"").decode()))
    return req


# --- the connection ----------------------------------------------------------

class Connection:
    """One ttrpc connection to a unix socket.

    trace, when given, is called as trace(direction, header, payload) for
    every frame, direction "send" or "recv", with the raw bytes.
    """

    def __init__(self, path, timeout=10.0, trace=None):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._sock.connect(path)
        self._sock.settimeout(None)
        self._trace = trace
        self._wlock = threading.Lock()  # one frame written at a time
        self._mu = threading.Lock()  # guards _next_id, _streams, _closed
        self._next_id = 1
        self._streams = {}  # stream id -> queue.Queue of (type, flags, payload)
        self._closed = None  # the reason, once the reader stopped
        self._reader = threading.Thread(target=self._read_loop, name="ttrpc-reader", daemon=True)
        self._reader.start()

    def close(self):
        """Closes the socket; pending calls fail with ConnectionClosed."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._reader.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionClosed("connection closed by the daemon")
            buf += chunk
        return bytes(buf)

    def _read_loop(self):
        reason = ConnectionClosed("connection closed")
        try:
            while True:
                header = self._read_exact(HEADER_LENGTH)
                length, sid, mtype, flags = HEADER.unpack(header)
                if length > MESSAGE_LENGTH_MAX:
                    raise ProtocolError("frame of %d bytes exceeds 4 MiB" % length)
                payload = self._read_exact(length) if length else b""
                if self._trace:
                    self._trace("recv", header, payload)
                with self._mu:
                    q = self._streams.get(sid)
                if q is not None:  # frames of abandoned streams are dropped
                    q.put((mtype, flags, payload))
        except (OSError, ConnectionClosed, ProtocolError) as e:
            if isinstance(e, (ConnectionClosed, ProtocolError)):
                reason = e
        with self._mu:
            self._closed = reason
            streams = list(self._streams.values())
        for q in streams:
            q.put(None)

    def _send(self, sid, mtype, flags, payload):
        if len(payload) > MESSAGE_LENGTH_MAX:
            raise ResourceExhausted("message of %d bytes exceeds 4 MiB" % len(payload))
        header = HEADER.pack(len(payload), sid, mtype, flags)
        if self._trace:
            self._trace("send", header, payload)
        with self._wlock:
            self._sock.sendall(header + payload)

    def _open(self, request, flags):
        with self._mu:
            if self._closed is not None:
                raise ConnectionClosed(str(self._closed))
            sid = self._next_id
            self._next_id += 2  # client streams are odd and increase
            q = queue.Queue()
            self._streams[sid] = q
        try:
            self._send(sid, TYPE_REQUEST, flags, request)
        except BaseException:
            self._forget(sid)
            raise
        return sid, q

    def _forget(self, sid):
        with self._mu:
            self._streams.pop(sid, None)

    def _next(self, q, timeout):
        try:
            item = q.get(timeout=timeout)
        except queue.Empty:
            raise DeadlineExceeded("no answer within %ss" % timeout) from None
        if item is None:
            with self._mu:
                raise ConnectionClosed(str(self._closed))
        return item

    def call(self, service, method, payload, metadata=(), timeout=None):
        """A unary call: returns the response payload or raises an Error."""
        tn = int(timeout * 1e9) if timeout else 0
        sid, q = self._open(encode_request(service, method, payload, tn, metadata), 0)
        try:
            mtype, _, data = self._next(q, timeout)
        finally:
            self._forget(sid)
        if mtype != TYPE_RESPONSE:
            raise ProtocolError("unary call answered with a frame of type %d" % mtype)
        code, message, out = decode_response(data)
        if code != OK:
            raise error_for(code, message)
        return out

    def stream(self, service, method, payload, metadata=()):
        """A server-streaming call: returns an iterator of each message's
        payload, which ends when the server ends the stream and raises an
        Error when it ends it with one. ttrpc has no cancel frame: to stop
        early, close the connection (keep a stream that may never end on
        its own connection).

        The request is sent before this returns, not at the first
        iteration; the server starts the call when it reads it."""
        sid, q = self._open(encode_request(service, method, payload, 0, metadata),
                            FLAG_REMOTE_CLOSED)
        return self._receive(sid, q)

    def _receive(self, sid, q):
        try:
            while True:
                mtype, flags, data = self._next(q, None)
                if mtype == TYPE_RESPONSE:
                    code, message, _ = decode_response(data)
                    if code != OK:
                        raise error_for(code, message)
                    return
                if mtype != TYPE_DATA:
                    raise ProtocolError("unexpected frame type %d on a stream" % mtype)
                if not flags & FLAG_NO_DATA:
                    yield data
                if flags & FLAG_REMOTE_CLOSED:
                    return
        finally:
            self._forget(sid)

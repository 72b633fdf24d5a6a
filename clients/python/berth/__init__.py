"""berth: a Python client of berthd's ttrpc API.

    import berth
    with berth.Client("/run/berth/berth.sock", namespace="py") as c:
        print(c.version().version)
        print(c.run_image("busybox", "hello", ["echo", "hello"]))  # RunResult(0, b"hello\n", b"")

See clients/python/README.md and docs/PROTOCOL.md.
"""

from .client import (Client, Subscription, RunResult, unpack_event, DEFAULT_ADDRESS, NAMESPACE_KEY,
                     LEASE_KEY)
from .ttrpc import (Error, Canceled, Unknown, InvalidArgument, DeadlineExceeded, NotFound,
                    AlreadyExists, PermissionDenied, ResourceExhausted, FailedPrecondition,
                    NotImplemented_, Internal, Unavailable, ConnectionClosed, ProtocolError)
from . import cio, image, spec

__all__ = ["Client", "Subscription", "RunResult", "unpack_event", "DEFAULT_ADDRESS", "NAMESPACE_KEY",
           "LEASE_KEY", "cio", "image", "spec",
           "Error", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
           "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
           "NotImplemented_", "Internal", "Unavailable", "ConnectionClosed", "ProtocolError"]

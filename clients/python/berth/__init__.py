"""berth: a Python client of berthd's ttrpc API.

    import berth
    with berth.Client("/run/berth/berth.sock", namespace="py") as c:
        print(c.version().version)

See clients/python/README.md and docs/PROTOCOL.md.
"""

from .client import Client, Subscription, unpack_event, DEFAULT_ADDRESS, NAMESPACE_KEY
from .ttrpc import (Error, Canceled, Unknown, InvalidArgument, DeadlineExceeded, NotFound,
                    AlreadyExists, PermissionDenied, ResourceExhausted, FailedPrecondition,
                    NotImplemented_, Internal, Unavailable, ConnectionClosed, ProtocolError)
from . import spec

__all__ = ["Client", "Subscription", "unpack_event", "DEFAULT_ADDRESS", "NAMESPACE_KEY", "spec",
           "Error", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
           "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
           "NotImplemented_", "Internal", "Unavailable", "ConnectionClosed", "ProtocolError"]

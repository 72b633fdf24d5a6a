"""A client of berthd's ttrpc API over the classes generated from proto/.

Every call names its service and method as the .proto does; the request
and response classes are looked up from the generated descriptors, so a
method that the .proto files no longer have fails here before it reaches
the wire.
"""

import json

from google.protobuf import descriptor_pool, symbol_database, timestamp_pb2

from . import gen, spec, ttrpc
from .gen import (containers_pb2, events_pb2, namespaces_pb2, tasks_pb2, types_pb2,
                  version_pb2)

DEFAULT_ADDRESS = "/run/berth/berth.sock"
DEFAULT_NAMESPACE = "default"
NAMESPACE_KEY = "berth-namespace"  # the request metadata key of the namespace

VERSION = "berth.services.version.v1.Version"
NAMESPACES = "berth.services.namespaces.v1.Namespaces"
CONTAINERS = "berth.services.containers.v1.Containers"
TASKS = "berth.services.tasks.v1.Tasks"
EVENTS = "berth.services.events.v1.Events"

_pool = descriptor_pool.Default()
_symbols = symbol_database.Default()
assert gen  # the import registers every generated type in the pool


def _method(service, method):
    try:
        m = _pool.FindServiceByName(service).FindMethodByName(method)
    except KeyError:
        raise ttrpc.NotImplemented_("%s/%s is not in the .proto files" % (service, method)) from None
    if m is None:
        raise ttrpc.NotImplemented_("%s/%s is not in the .proto files" % (service, method))
    return m


def unpack_event(any_msg):
    """The payload of an Envelope (a google.protobuf.Any) as its generated
    class (events.v1 TaskExit, ContainerCreate, …), or None when the type
    is not in the .proto files."""
    name = any_msg.type_url.rsplit("/", 1)[-1]
    try:
        cls = _symbols.GetSymbol(name)
    except KeyError:
        return None
    msg = cls()
    msg.ParseFromString(any_msg.value)
    return msg


class Client:
    """A connection to berthd. Calls act in namespace unless they are given
    another one; the namespace goes in the request metadata.

    trace, when given, sees every frame's raw bytes (see ttrpc.Connection).
    """

    def __init__(self, address=DEFAULT_ADDRESS, namespace=DEFAULT_NAMESPACE, timeout=30.0, trace=None):
        self.address = address
        self.namespace = namespace
        self.timeout = timeout
        self._trace = trace
        self._conn = ttrpc.Connection(address, trace=trace)

    def close(self):
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _metadata(self, namespace):
        ns = self.namespace if namespace is None else namespace
        return [(NAMESPACE_KEY, ns)] if ns else []

    def call(self, service, method, request, namespace=None, timeout=None):
        """A unary call of service/method (full .proto names) with request,
        returning the response message. timeout=0 waits without a limit."""
        m = _method(service, method)
        if m.input_type.full_name != request.DESCRIPTOR.full_name:
            raise TypeError("%s/%s takes %s, not %s" % (service, method, m.input_type.full_name,
                                                        request.DESCRIPTOR.full_name))
        t = self.timeout if timeout is None else timeout
        payload = self._conn.call(service, method, request.SerializeToString(),
                                  self._metadata(namespace), t or None)
        resp = _symbols.GetSymbol(m.output_type.full_name)()
        resp.ParseFromString(payload)
        return resp

    # version.v1

    def version(self):
        from google.protobuf import empty_pb2
        return self.call(VERSION, "Version", empty_pb2.Empty())

    # namespaces.v1

    def namespaces(self, *filters):
        req = namespaces_pb2.ListNamespacesRequest(filters=list(filters))
        return list(self.call(NAMESPACES, "List", req).namespaces)

    # containers.v1

    def containers(self, *filters, namespace=None):
        req = containers_pb2.ListContainersRequest(filters=list(filters))
        return list(self.call(CONTAINERS, "List", req, namespace).containers)

    def create_container(self, container_id, spec_dict, labels=None, runtime="", namespace=None):
        """Creates a container with an OCI spec (a dict, see berth.spec)."""
        c = containers_pb2.Container(id=container_id, labels=labels or {},
                                     spec=json.dumps(spec_dict).encode())
        if runtime:
            c.runtime.name = runtime
        req = containers_pb2.CreateContainerRequest(container=c)
        return self.call(CONTAINERS, "Create", req, namespace).container

    def container(self, container_id, namespace=None):
        req = containers_pb2.GetContainerRequest(id=container_id)
        return self.call(CONTAINERS, "Get", req, namespace).container

    def delete_container(self, container_id, namespace=None):
        self.call(CONTAINERS, "Delete", containers_pb2.DeleteContainerRequest(id=container_id), namespace)

    # tasks.v1

    def create_task(self, container_id, stdio=None, namespace=None):
        """Creates the container's task; returns its pid. stdio is a
        types.v1 Stdio (none by default: output is discarded)."""
        req = tasks_pb2.CreateTaskRequest(container_id=container_id, stdio=stdio or types_pb2.Stdio())
        return self.call(TASKS, "Create", req, namespace).pid

    def start(self, container_id, exec_id="", namespace=None):
        req = tasks_pb2.StartRequest(container_id=container_id, exec_id=exec_id)
        return self.call(TASKS, "Start", req, namespace).pid

    def wait(self, container_id, exec_id="", namespace=None, timeout=0):
        """Blocks until the process exits; returns the WaitResponse
        (exit_status, exited_at). No time limit unless timeout is given."""
        req = tasks_pb2.WaitRequest(container_id=container_id, exec_id=exec_id)
        return self.call(TASKS, "Wait", req, namespace, timeout)

    def kill(self, container_id, signal=15, all=False, namespace=None):
        req = tasks_pb2.KillRequest(container_id=container_id, signal=signal, all=all)
        self.call(TASKS, "Kill", req, namespace)

    def delete_task(self, container_id, namespace=None):
        req = tasks_pb2.DeleteTaskRequest(container_id=container_id)
        return self.call(TASKS, "Delete", req, namespace)

    def tasks(self, *filters, namespace=None):
        req = tasks_pb2.ListTasksRequest(filters=list(filters))
        return list(self.call(TASKS, "List", req, namespace).tasks)

    def run(self, container_id, rootfs, args, namespace=None):
        """Creates a container from a root filesystem folder and starts its
        task; returns the pid. Wait with wait(container_id)."""
        ns = self.namespace if namespace is None else namespace
        self.create_container(container_id, spec.generate(ns, container_id, rootfs, args), namespace=ns)
        self.create_task(container_id, namespace=ns)
        return self.start(container_id, namespace=ns)

    # events.v1

    def subscribe(self, *filters, since=None):
        """Subscribes to the events matching any of the filters (all
        namespaces; filter on namespace=="…" to narrow). Returns a
        Subscription: iterate it for Envelopes, close it to stop. It has
        a connection of its own, as ttrpc can end a stream only by
        closing the connection. The daemon subscribes when it reads the
        request, a moment after this returns: pass since (a timezone-aware
        datetime) to be sure to see every event after that time."""
        req = events_pb2.SubscribeRequest(filters=list(filters))
        if since is not None:
            ts = timestamp_pb2.Timestamp()
            ts.FromDatetime(since)
            req.since.CopyFrom(ts)
        return Subscription(self.address, req, self._trace)


class Subscription:
    """An events stream on its own connection. Iterating yields
    events.v1 Envelopes; unpack_event(env.event) decodes the payload."""

    def __init__(self, address, request, trace=None):
        _method(EVENTS, "Subscribe")
        self._conn = ttrpc.Connection(address, trace=trace)
        # No namespace metadata: Subscribe spans all namespaces.
        self._frames = self._conn.stream(EVENTS, "Subscribe", request.SerializeToString())

    def __iter__(self):
        for data in self._frames:
            env = events_pb2.Envelope()
            env.ParseFromString(data)
            yield env

    def close(self):
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

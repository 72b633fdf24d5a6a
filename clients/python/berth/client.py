"""A client of berthd's ttrpc API over the classes generated from proto/.

Every call names its service and method as the .proto does; the request
and response classes are looked up from the generated descriptors, so a
method that the .proto files no longer have fails here before it reaches
the wire.
"""

import collections
import datetime
import json

from google.protobuf import descriptor_pool, symbol_database, timestamp_pb2

from . import cio, gen, image, spec, ttrpc
from .gen import (containers_pb2, content_pb2, events_pb2, images_pb2, introspection_pb2,
                  leases_pb2, namespaces_pb2, snapshots_pb2, tasks_pb2, types_pb2, version_pb2)

DEFAULT_ADDRESS = "/run/berth/berth.sock"
DEFAULT_NAMESPACE = "default"
NAMESPACE_KEY = "berth-namespace"  # the request metadata key of the namespace
LEASE_KEY = "berth-lease"  # the request metadata key of the lease a call works under
LEASE_EXPIRE_LABEL = "berth.io/gc.expire"  # RFC 3339 time after which GC drops a lease

VERSION = "berth.services.version.v1.Version"
NAMESPACES = "berth.services.namespaces.v1.Namespaces"
CONTAINERS = "berth.services.containers.v1.Containers"
TASKS = "berth.services.tasks.v1.Tasks"
EVENTS = "berth.services.events.v1.Events"
IMAGES = "berth.services.images.v1.Images"
CONTENT = "berth.services.content.v1.Content"
SNAPSHOTS = "berth.services.snapshots.v1.Snapshots"
LEASES = "berth.services.leases.v1.Leases"
INTROSPECTION = "berth.services.introspection.v1.Introspection"

SIGKILL = 9

# RunResult is what run_image returns: the exit status and the output
# captured (bytes; b"" for a stream not captured).
RunResult = collections.namedtuple("RunResult", "exit_status stdout stderr")

_pool = descriptor_pool.Default()
_symbols = symbol_database.Default()
assert gen  # the import registers every generated type in the pool


def _checked_method(service, method, request):
    m = _method(service, method)
    if m.input_type.full_name != request.DESCRIPTOR.full_name:
        raise TypeError("%s/%s takes %s, not %s" % (service, method, m.input_type.full_name,
                                                    request.DESCRIPTOR.full_name))
    return m


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

    def _ns(self, namespace):
        return self.namespace if namespace is None else namespace

    def _metadata(self, namespace, lease=None):
        ns = self._ns(namespace)
        md = [(NAMESPACE_KEY, ns)] if ns else []
        if lease:
            md.append((LEASE_KEY, lease))
        return md

    def call(self, service, method, request, namespace=None, timeout=None, lease=None):
        """A unary call of service/method (full .proto names) with request,
        returning the response message. timeout=0 waits without a limit;
        lease names a lease the call works under (what it makes is kept
        until the lease goes)."""
        m = _checked_method(service, method, request)
        t = self.timeout if timeout is None else timeout
        payload = self._conn.call(service, method, request.SerializeToString(),
                                  self._metadata(namespace, lease), t or None)
        resp = _symbols.GetSymbol(m.output_type.full_name)()
        resp.ParseFromString(payload)
        return resp

    def stream(self, service, method, request, namespace=None):
        """A server-streaming call: yields the response messages. The
        namespace goes in the metadata; berth's streaming requests in a
        namespace also have a namespace field, which the caller fills."""
        m = _checked_method(service, method, request)
        cls = _symbols.GetSymbol(m.output_type.full_name)
        for data in self._conn.stream(service, method, request.SerializeToString(), self._metadata(namespace)):
            resp = cls()
            resp.ParseFromString(data)
            yield resp

    # version.v1

    def version(self):
        from google.protobuf import empty_pb2
        return self.call(VERSION, "Version", empty_pb2.Empty())

    # namespaces.v1

    def namespaces(self, *filters):
        """The namespaces matching any of the filters (all without), over
        ListStream: the unary List fails once the list passes ttrpc's
        4 MiB message limit."""
        req = namespaces_pb2.ListNamespacesRequest(filters=list(filters))
        return [n for resp in self.stream(NAMESPACES, "ListStream", req) for n in resp.namespaces]

    # containers.v1

    def containers(self, *filters, namespace=None):
        """The container records matching any of the filters (all
        without), over ListStream (see namespaces)."""
        ns = self._ns(namespace)
        req = containers_pb2.ListContainersRequest(filters=list(filters), namespace=ns)
        return [c for resp in self.stream(CONTAINERS, "ListStream", req, ns) for c in resp.containers]

    def create_container(self, container_id, spec_dict, labels=None, runtime="", namespace=None,
                         image="", snapshotter="", snapshot_key=""):
        """Creates a container with an OCI spec (a dict, see berth.spec).
        image names the image it is made from; snapshotter and
        snapshot_key its root filesystem's snapshot, which create_task
        mounts and delete_container(snapshot_cleanup=True) removes."""
        return self._create_container(container_id, spec_dict, labels, runtime, namespace, image,
                                      snapshotter, snapshot_key).container

    def _create_container(self, container_id, spec_dict, labels, runtime, namespace, image,
                          snapshotter, snapshot_key, new_snapshot=None):
        """create_container's call; with new_snapshot (a containers.v1
        NewSnapshot) the daemon makes the snapshot with the container.
        Returns the CreateContainerResponse."""
        c = containers_pb2.Container(id=container_id, labels=labels or {},
                                     spec=json.dumps(spec_dict).encode(), image=image,
                                     snapshotter=snapshotter, snapshot_key=snapshot_key)
        if runtime:
            c.runtime.name = runtime
        req = containers_pb2.CreateContainerRequest(container=c, snapshot=new_snapshot)
        return self.call(CONTAINERS, "Create", req, namespace)

    def container(self, container_id, namespace=None):
        req = containers_pb2.GetContainerRequest(id=container_id)
        return self.call(CONTAINERS, "Get", req, namespace).container

    def delete_container(self, container_id, snapshot_cleanup=False, namespace=None):
        """Deletes the container; with snapshot_cleanup its snapshot too
        (the Go client's WithSnapshotCleanup), in the same transaction of
        the daemon (remove_snapshot): FailedPrecondition while the
        container has a task (its shim has the snapshot mounted) or when
        the snapshot cannot be removed, and then nothing changes."""
        if not snapshot_cleanup:
            self.call(CONTAINERS, "Delete", containers_pb2.DeleteContainerRequest(id=container_id), namespace)
            return
        c = self.container(container_id, namespace)
        req = containers_pb2.DeleteContainerRequest(id=container_id, remove_snapshot=True)
        if self.call(CONTAINERS, "Delete", req, namespace).snapshot_removed or not c.snapshot_key:
            return
        # A daemon older than remove_snapshot deleted the record only.
        try:
            self.remove_snapshot(c.snapshotter, c.snapshot_key, namespace)
        except ttrpc.NotFound:
            pass

    # tasks.v1

    def create_task(self, container_id, stdio=None, rootfs=None, namespace=None):
        """Creates the container's task; returns its pid. stdio is a
        types.v1 Stdio (none by default: output is discarded; see
        berth.cio.Output for FIFOs). rootfs is a list of types.v1 Mounts;
        by default the mounts of the container's snapshot, if it has one."""
        if rootfs is None:
            c = self.container(container_id, namespace)
            rootfs = self.snapshot_mounts(c.snapshotter, c.snapshot_key, namespace) if c.snapshot_key else []
        req = tasks_pb2.CreateTaskRequest(container_id=container_id, stdio=stdio or types_pb2.Stdio(),
                                          rootfs=rootfs)
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

    def run_image(self, ref, container_id, args=None, snapshotter="", read_only=False,
                  platform=image.DEFAULT_PLATFORM, env=None, cwd=None, stdout=True, stderr=True,
                  fifo_dir=cio.DEFAULT_FIFO_DIR, timeout=0, namespace=None):
        """Runs a container of the image ref to its exit, as `berthctl run
        --rm IMAGE ID [ARGS…]` does, and removes it with its task and
        snapshot. stdout and stderr are captured (True), discarded (False)
        or written to a binary file object. timeout (seconds, 0 for none)
        bounds the wait: the task is killed when it passes. Returns a
        RunResult (exit_status, stdout, stderr)."""
        ns = self._ns(namespace)
        _, mounts = self._create_from_image(container_id, ref, args=args, snapshotter=snapshotter,
                                            read_only=read_only, platform=platform, env=env, cwd=cwd,
                                            namespace=ns)
        try:
            with cio.Output(container_id, stdout, stderr, fifo_dir) as out:
                self.create_task(container_id, stdio=out.stdio(), rootfs=mounts, namespace=ns)
                try:
                    self.start(container_id, namespace=ns)
                    status = self.wait(container_id, namespace=ns, timeout=timeout).exit_status
                except BaseException:
                    self._kill_and_wait(container_id, ns)
                    raise
                finally:
                    self.delete_task(container_id, namespace=ns)
                    out.cancel()
                    out.wait()
                return RunResult(status, out.stdout, out.stderr)
        finally:
            self.delete_container(container_id, snapshot_cleanup=True, namespace=ns)

    def _kill_and_wait(self, container_id, namespace):
        """SIGKILLs a task that must not outlive a failed run_image and
        waits for it, so that it can be deleted; errors are the task's
        being gone already."""
        try:
            self.kill(container_id, SIGKILL, all=True, namespace=namespace)
            self.wait(container_id, namespace=namespace, timeout=self.timeout)
        except ttrpc.Error:
            pass

    def create_container_from_image(self, container_id, ref, args=None, snapshotter="", read_only=False,
                                    platform=image.DEFAULT_PLATFORM, env=None, cwd=None, labels=None,
                                    runtime="", namespace=None):
        """Creates a container of the image ref as the Go client's
        NewContainer(WithImage, WithNewSnapshot (or WithNewSnapshotView
        with read_only), WithNewSpec(oci.WithImageConfig)) does: the spec
        from the image's config for platform (args, env and cwd given
        here override it), a snapshot keyed container_id on the image's
        unpacked layers in snapshotter (the daemon's default when empty),
        which the daemon makes with the container in one transaction
        (CreateContainerRequest.snapshot), so no lease is needed. Returns
        the container record.

        NotFound when the daemon has no image ref, or has not unpacked it
        into snapshotter. Nothing is left behind on failure."""
        return self._create_from_image(container_id, ref, args, snapshotter, read_only, platform, env,
                                       cwd, labels, runtime, namespace)[0]

    def _create_from_image(self, container_id, ref, args=None, snapshotter="", read_only=False,
                           platform=image.DEFAULT_PLATFORM, env=None, cwd=None, labels=None,
                           runtime="", namespace=None):
        """create_container_from_image; returns the record and the
        snapshot's mounts."""
        ns = self._ns(namespace)
        img = self.resolve_image(ref, platform, namespace=ns)
        s = spec.generate(ns, container_id, spec.IMAGE_ROOT, ["sh"], readonly=read_only)
        spec.with_image_config(s, img.runtime_config)
        if args:
            s["process"]["args"] = list(args)
        for e in env or []:
            s["process"]["env"] = spec.set_env(s["process"]["env"], e)
        if cwd:
            spec.with_image_config(s, {"WorkingDir": cwd})
        snapshotter = snapshotter or self.default_snapshotter()
        parent = img.chain_id
        try:
            resp = self._create_container(container_id, s, labels, runtime, ns, img.name, snapshotter,
                                          container_id, containers_pb2.NewSnapshot(parent=parent, view=read_only))
        except ttrpc.NotFound as e:
            if not parent:
                raise
            # A missing parent is the one NotFound of the snapshot, besides
            # an unknown snapshotter: the daemon's message says which.
            raise ttrpc.NotFound("container %r: image %r is not unpacked into %s (pull or import it with unpack): %s"
                                 % (container_id, img.name, snapshotter, e.message)) from None
        if resp.snapshot_created:
            return resp.container, list(resp.mounts)
        # A daemon older than the snapshot field stored the container
        # alone: its record holds the snapshot against GC once made.
        try:
            if read_only:
                mounts = self.view_snapshot(snapshotter, container_id, parent, namespace=ns)
            else:
                mounts = self.prepare_snapshot(snapshotter, container_id, parent, namespace=ns)
        except BaseException:
            self.delete_container(container_id, namespace=ns)
            raise
        return resp.container, mounts

    # images.v1

    def images(self, *filters, namespace=None):
        """The image records matching any of the filters (all without):
        fields name, target.digest, target.mediatype, target.size,
        labels.<key>, annotations.<key>."""
        ns = self._ns(namespace)
        req = images_pb2.ListImagesRequest(filters=list(filters), namespace=ns)
        return [i for resp in self.stream(IMAGES, "ListStream", req, ns) for i in resp.images]

    def get_image(self, ref, namespace=None):
        """The image record named ref, else the one its normalised
        reference names ("busybox" is docker.io/library/busybox:latest),
        as pulls and imports name images. NotFound naming both."""
        try:
            return self.call(IMAGES, "Get", images_pb2.GetImageRequest(name=ref), namespace).image
        except ttrpc.NotFound as e:
            norm = image.normalize_reference(ref)
            if norm is None or norm == ref:
                raise
            try:
                return self.call(IMAGES, "Get", images_pb2.GetImageRequest(name=norm), namespace).image
            except ttrpc.NotFound:
                raise ttrpc.NotFound("%s (nor as %r)" % (e.message, norm)) from None

    def resolve_image(self, ref, platform=image.DEFAULT_PLATFORM, namespace=None):
        """The berth.image.Image of ref for platform: its manifest (from
        the index, when the image is one), config and chain ID, read
        through the content service and checked against their digests."""
        rec = self.get_image(ref, namespace)
        return image.resolve(lambda d: self.read_blob(d["digest"], namespace=namespace),
                             rec.name, image.descriptor(rec.target), platform)

    # content.v1

    def read_blob(self, digest, offset=0, size=0, namespace=None):
        """The bytes of the blob digest (from offset, size bytes; 0: to the
        end), from the content service's Read stream in chunks."""
        ns = self._ns(namespace)
        req = content_pb2.ReadContentRequest(digest=digest, offset=offset, size=size, namespace=ns)
        buf = bytearray()
        for resp in self.stream(CONTENT, "Read", req, namespace=ns):
            if resp.offset != offset + len(buf):
                raise ttrpc.ProtocolError("blob %s: a chunk at %d, want %d" % (digest, resp.offset, offset + len(buf)))
            buf += resp.data
        return bytes(buf)

    # snapshots.v1

    def default_snapshotter(self):
        """The daemon's default snapshotter, into which pulls and imports
        unpack (what its snapshots service exports as "default")."""
        req = introspection_pb2.ServicesRequest(filters=['type=="berth.service.v1",id=="snapshots"'])
        for svc in self.call(INTROSPECTION, "Services", req).services:
            if svc.exports.get("default"):
                return svc.exports["default"]
        raise ttrpc.NotImplemented_("the daemon names no default snapshotter")

    def prepare_snapshot(self, snapshotter, key, parent="", labels=None, namespace=None, lease=None):
        """Makes the active snapshot key on parent; returns its mounts."""
        req = snapshots_pb2.PrepareSnapshotRequest(snapshotter=snapshotter, key=key, parent=parent,
                                                   labels=labels or {})
        return list(self.call(SNAPSHOTS, "Prepare", req, namespace, lease=lease).mounts)

    def view_snapshot(self, snapshotter, key, parent="", labels=None, namespace=None, lease=None):
        """Makes the read-only view key of parent; returns its mounts."""
        req = snapshots_pb2.ViewSnapshotRequest(snapshotter=snapshotter, key=key, parent=parent,
                                                labels=labels or {})
        return list(self.call(SNAPSHOTS, "View", req, namespace, lease=lease).mounts)

    def snapshot_mounts(self, snapshotter, key, namespace=None):
        req = snapshots_pb2.MountsRequest(snapshotter=snapshotter, key=key)
        return list(self.call(SNAPSHOTS, "Mounts", req, namespace).mounts)

    def stat_snapshot(self, snapshotter, key, namespace=None):
        req = snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key)
        return self.call(SNAPSHOTS, "Stat", req, namespace).info

    def remove_snapshot(self, snapshotter, key, namespace=None):
        req = snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key)
        self.call(SNAPSHOTS, "Remove", req, namespace)

    # leases.v1

    def create_lease(self, expire_in, namespace=None):
        """Makes a lease that expires after expire_in (a timedelta) should
        it not be deleted first; returns its id."""
        at = datetime.datetime.now(datetime.timezone.utc) + expire_in
        labels = {LEASE_EXPIRE_LABEL: at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        return self.call(LEASES, "Create", leases_pb2.CreateRequest(labels=labels), namespace).lease.id

    def delete_lease(self, lease_id, namespace=None):
        self.call(LEASES, "Delete", leases_pb2.DeleteRequest(id=lease_id), namespace)

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

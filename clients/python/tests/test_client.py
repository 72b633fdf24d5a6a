"""The Python client against a running berthd.

Run by integration/python_test.go, which starts the daemon and sets
BERTH_ADDRESS (its socket), BERTH_ROOTFS (a busybox root folder),
BERTH_NAMESPACE, BERTH_IMAGE (busybox, imported and unpacked into the
default snapshotter), BERTH_INDEX_IMAGE (an index with busybox as its
linux/amd64 manifest), BERTH_IMAGE_CHAIN_ID (the chain ID the Go client
computes for busybox) and BERTH_FIFO_DIR. Everything is decoded with the classes generated from
the .proto files, so a change of the wire format on the Go side without
the Python side fails here (and make check-protos keeps the classes in
step with the .proto files).
"""

import datetime
import json
import os
import queue
import threading
import unittest

import berth
from berth import ttrpc
from berth.gen import events_pb2, leases_pb2, snapshots_pb2, task_pb2, version_pb2

ADDRESS = os.environ.get("BERTH_ADDRESS")
ROOTFS = os.environ.get("BERTH_ROOTFS")
NAMESPACE = os.environ.get("BERTH_NAMESPACE", "python-test")
IMAGE = os.environ.get("BERTH_IMAGE")
INDEX_IMAGE = os.environ.get("BERTH_INDEX_IMAGE")
CHAIN_ID = os.environ.get("BERTH_IMAGE_CHAIN_ID")
FIFO_DIR = os.environ.get("BERTH_FIFO_DIR")


def read_events(sub):
    """A queue that a thread fills with sub's Envelopes, then None."""
    envs = queue.Queue()

    def read():
        try:
            for env in sub:
                envs.put(env)
        except berth.ConnectionClosed:
            pass
        envs.put(None)
    threading.Thread(target=read, daemon=True).start()
    return envs


def next_event(test, envs, topic):
    """The next Envelope of topic from envs; the others are skipped."""
    while True:
        env = envs.get(timeout=30)
        test.assertIsNotNone(env, "the events stream ended")
        test.assertIsInstance(env, events_pb2.Envelope)
        if env.topic == topic:
            return env


@unittest.skipUnless(ADDRESS and ROOTFS, "needs BERTH_ADDRESS and BERTH_ROOTFS (run by integration/python_test.go)")
class ClientTest(unittest.TestCase):
    def setUp(self):
        self.c = berth.Client(ADDRESS, namespace=NAMESPACE)
        self.addCleanup(self.c.close)

    def test_version(self):
        v = self.c.version()
        self.assertIsInstance(v, version_pb2.VersionResponse)
        self.assertTrue(v.version)
        self.assertTrue(v.go_version.startswith("go"), v.go_version)

    def test_run_wait_and_exit_event(self):
        cid = "py-exit"
        since = datetime.datetime.now(datetime.timezone.utc)
        sub = self.c.subscribe('topic=="/tasks/exit",namespace=="%s"' % NAMESPACE,
                               'topic=="/tasks/start",namespace=="%s"' % NAMESPACE,
                               since=since)
        self.addCleanup(sub.close)
        envs = read_events(sub)

        pid = self.c.run(cid, ROOTFS, ["sh", "-c", "exit 7"])
        self.assertGreater(pid, 0)
        self.assertIn(cid, [c.id for c in self.c.containers()])
        self.assertIn(NAMESPACE, [n.name for n in self.c.namespaces()])
        self.assertEqual(self.c.wait(cid, timeout=30).exit_status, 7)

        exit_event = None
        seen = []
        while exit_event is None:
            env = envs.get(timeout=30)
            self.assertIsNotNone(env, "the events stream ended")
            self.assertIsInstance(env, events_pb2.Envelope)
            self.assertEqual(env.namespace, NAMESPACE)
            seen.append(env.topic)
            ev = berth.unpack_event(env.event)
            if env.topic == "/tasks/exit":
                exit_event = ev
        self.assertEqual(seen, ["/tasks/start", "/tasks/exit"])
        self.assertIsInstance(exit_event, task_pb2.TaskExit)
        self.assertEqual(exit_event.container_id, cid)
        self.assertEqual(exit_event.pid, pid)
        self.assertEqual(exit_event.exit_status, 7)
        self.assertGreater(exit_event.exited_at.seconds, 0)

        deleted = self.c.delete_task(cid)
        self.assertEqual(deleted.exit_status, 7)
        self.c.delete_container(cid)
        self.assertNotIn(cid, [c.id for c in self.c.containers()])

    def test_errors(self):
        with self.assertRaises(berth.NotFound):
            self.c.container("no-such-container")
        with self.assertRaises(berth.InvalidArgument):
            self.c.container("../escape")
        with self.assertRaises(berth.FailedPrecondition):
            self.c.containers(namespace="")  # no namespace in the metadata
        spec = berth.spec.generate(NAMESPACE, "py-twice", ROOTFS, ["true"])
        self.c.create_container("py-twice", spec)
        self.addCleanup(self.c.delete_container, "py-twice")
        with self.assertRaises(berth.AlreadyExists):
            self.c.create_container("py-twice", spec)
        with self.assertRaises(berth.NotFound):
            self.c.delete_task("py-twice")  # a container without a task
        with self.assertRaises(berth.NotImplemented_):
            self.c._conn.call("berth.services.nothing.v1.Nothing", "Call", b"")

    def test_raw_frames(self):
        """The framing, checked byte by byte on a unary call."""
        frames = []
        with ttrpc.Connection(ADDRESS, trace=lambda d, h, p: frames.append((d, h, p))) as conn:
            payload = conn.call("berth.services.version.v1.Version", "Version", b"")
        (d1, h1, p1), (d2, h2, p2) = frames
        self.assertEqual((d1, d2), ("send", "recv"))
        self.assertEqual(ttrpc.HEADER.unpack(h1), (len(p1), 1, ttrpc.TYPE_REQUEST, 0))
        self.assertEqual(ttrpc.HEADER.unpack(h2), (len(p2), 1, ttrpc.TYPE_RESPONSE, 0))
        req = ttrpc.decode_request(p1)
        self.assertEqual((req["service"], req["method"]), ("berth.services.version.v1.Version", "Version"))
        code, _, out = ttrpc.decode_response(p2)
        self.assertEqual(code, ttrpc.OK)
        self.assertEqual(out, payload)
        v = version_pb2.VersionResponse()
        v.ParseFromString(payload)
        self.assertTrue(v.go_version.startswith("go"))


@unittest.skipUnless(ADDRESS and IMAGE and INDEX_IMAGE and CHAIN_ID and FIFO_DIR,
                     "needs BERTH_ADDRESS, BERTH_IMAGE, BERTH_INDEX_IMAGE, BERTH_IMAGE_CHAIN_ID and "
                     "BERTH_FIFO_DIR (run by integration/python_test.go)")
class ImageTest(unittest.TestCase):
    """Containers from an image: snapshot, spec from its config, FIFOs."""

    def setUp(self):
        self.c = berth.Client(ADDRESS, namespace=NAMESPACE)
        self.addCleanup(self.c.close)

    def assertGone(self, cid, snapshotter):
        with self.assertRaises(berth.NotFound):
            self.c.container(cid)
        with self.assertRaises(berth.NotFound):
            self.c.stat_snapshot(snapshotter, cid)

    def test_run_echo_hello(self):
        cid = "py-img-hello"
        since = datetime.datetime.now(datetime.timezone.utc)
        sub = self.c.subscribe('topic=="/tasks/exit",namespace=="%s"' % NAMESPACE, since=since)
        self.addCleanup(sub.close)
        envs = read_events(sub)
        # "busybox" is found as docker.io/library/busybox:latest.
        res = self.c.run_image("busybox", cid, ["echo", "hello"], fifo_dir=FIFO_DIR)
        self.assertEqual(res, berth.RunResult(0, b"hello\n", b""))
        ev = berth.unpack_event(next_event(self, envs, "/tasks/exit").event)
        self.assertIsInstance(ev, task_pb2.TaskExit)
        self.assertEqual((ev.container_id, ev.exit_status), (cid, 0))
        self.assertGone(cid, self.c.default_snapshotter())

    def test_run_exit_code_and_stderr(self):
        res = self.c.run_image(IMAGE, "py-img-exit", ["sh", "-c", "echo out; echo err >&2; exit 5"],
                               fifo_dir=FIFO_DIR)
        self.assertEqual(res, berth.RunResult(5, b"out\n", b"err\n"))

    def test_run_read_only_and_env(self):
        res = self.c.run_image(IMAGE, "py-img-ro", ["sh", "-c", "echo $GREETING; pwd; touch /x"],
                               read_only=True, env=["GREETING=hi"], cwd="/tmp", stderr=False,
                               fifo_dir=FIFO_DIR)
        self.assertNotEqual(res.exit_status, 0)  # touch: Read-only file system
        self.assertEqual((res.stdout, res.stderr), (b"hi\n/tmp\n", b""))

    def test_resolve_agrees_with_go(self):
        img = self.c.resolve_image(IMAGE)
        self.assertEqual(img.name, IMAGE)
        self.assertEqual(img.chain_id, CHAIN_ID)
        self.assertEqual(img.runtime_config["Cmd"], ["sh"])
        self.assertIn(IMAGE, [i.name for i in self.c.images()])
        # The index's linux/amd64 manifest is busybox's; its linux/arm64
        # one is absent from the daemon and must not be read.
        idx = self.c.resolve_image(INDEX_IMAGE)
        self.assertEqual(idx.target["mediaType"], berth.image.MEDIA_TYPE_OCI_INDEX)
        self.assertEqual(idx.manifest["digest"], img.manifest["digest"])
        with self.assertRaises(berth.NotFound):
            self.c.resolve_image(INDEX_IMAGE, platform="linux/arm64")
        res = self.c.run_image(INDEX_IMAGE, "py-img-index", ["echo", "index"], fifo_dir=FIFO_DIR)
        self.assertEqual(res.stdout, b"index\n")

    def test_container_record_and_snapshot_cleanup(self):
        cid = "py-img-record"
        sn = self.c.default_snapshotter()
        rec = self.c.create_container_from_image(cid, IMAGE)
        self.addCleanup(self._delete, cid)
        self.assertEqual((rec.image, rec.snapshotter, rec.snapshot_key), (IMAGE, sn, cid))
        s = json.loads(rec.spec)
        self.assertEqual(s["process"]["args"], ["sh"])  # the image's Cmd
        self.assertEqual(s["root"], {"path": "rootfs", "readonly": False})
        info = self.c.stat_snapshot(sn, cid)
        self.assertEqual((info.parent, info.kind), (CHAIN_ID, snapshots_pb2.KIND_ACTIVE))
        with self.assertRaises(berth.AlreadyExists):  # the record exists: the snapshot stays
            self.c.create_container_from_image(cid, IMAGE)
        self.assertEqual(self.c.stat_snapshot(sn, cid).name, cid)
        # No lease is left holding it: only the record does.
        self.assertEqual(list(self.c.call(berth.client.LEASES, "List", leases_pb2.ListRequest()).leases), [])

        self.c.create_task(cid)  # mounts the snapshot
        with self.assertRaises(berth.FailedPrecondition):
            self.c.delete_container(cid, snapshot_cleanup=True)
        self.c.delete_task(cid)
        self.c.delete_container(cid, snapshot_cleanup=True)
        self.assertGone(cid, sn)

    def _delete(self, cid):
        try:
            self.c.delete_task(cid)
        except berth.NotFound:
            pass
        try:
            self.c.delete_container(cid, snapshot_cleanup=True)
        except berth.NotFound:
            pass

    def test_missing_image(self):
        for ref in ("example.com/no/such:1", "nosuch"):
            with self.assertRaises(berth.NotFound) as cm:
                self.c.run_image(ref, "py-img-missing", ["true"], fifo_dir=FIFO_DIR)
            self.assertIn(ref, str(cm.exception))
            with self.assertRaises(berth.NotFound):
                self.c.container("py-img-missing")
        with self.assertRaisesRegex(berth.NotFound, "docker.io/library/nosuch:latest"):
            self.c.get_image("nosuch")


if __name__ == "__main__":
    unittest.main()

"""The Python client against a running berthd.

Run by integration/python_test.go, which starts the daemon and sets
BERTH_ADDRESS (its socket), BERTH_ROOTFS (a busybox root folder) and
BERTH_NAMESPACE. Everything is decoded with the classes generated from
the .proto files, so a change of the wire format on the Go side without
the Python side fails here (and make check-protos keeps the classes in
step with the .proto files).
"""

import datetime
import os
import queue
import threading
import unittest

import berth
from berth import ttrpc
from berth.gen import events_pb2, task_pb2, version_pb2

ADDRESS = os.environ.get("BERTH_ADDRESS")
ROOTFS = os.environ.get("BERTH_ROOTFS")
NAMESPACE = os.environ.get("BERTH_NAMESPACE", "python-test")


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
        envs = queue.Queue()

        def read():
            try:
                for env in sub:
                    envs.put(env)
            except berth.ConnectionClosed:
                pass
            envs.put(None)
        threading.Thread(target=read, daemon=True).start()

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


if __name__ == "__main__":
    unittest.main()

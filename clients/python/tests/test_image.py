"""Images, specs from image configs and output FIFOs, without a daemon:
blobs are made here and read through a dict."""

import hashlib
import json
import os
import tempfile
import threading
import unittest

import berth
from berth import cio, image, spec


def blob(media_type, obj, **extra):
    """(descriptor, bytes) of obj as JSON."""
    data = json.dumps(obj).encode()
    d = {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}
    d.update(extra)
    return d, data


class Store:
    """Blobs by digest; read(desc) as resolve wants it, reads recorded."""

    def __init__(self):
        self.blobs = {}
        self.reads = []

    def add(self, desc_data):
        desc, data = desc_data
        self.blobs[desc["digest"]] = data
        return desc

    def read(self, desc):
        self.reads.append(desc["digest"])
        try:
            return self.blobs[desc["digest"]]
        except KeyError:
            raise berth.NotFound("blob %s: not found" % desc["digest"]) from None


DIFF_IDS = ["sha256:" + "1" * 64, "sha256:" + "2" * 64]


def one_image(store, cmd, arch="amd64"):
    """The manifest descriptor of a two-layer image for linux/arch."""
    cfg = store.add(blob(image.MEDIA_TYPE_OCI_CONFIG, {
        "architecture": arch, "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/w", "User": "1000:10"},
        "rootfs": {"type": "layers", "diff_ids": DIFF_IDS}}))
    layers = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + c * 64, "size": 1}
              for c in "ab"]
    return store.add(blob(image.MEDIA_TYPE_OCI_MANIFEST, {"schemaVersion": 2, "config": cfg, "layers": layers}))


class ImageTest(unittest.TestCase):
    def test_normalize_reference(self):
        digest = "sha256:" + "0123456789abcdef" * 4
        for ref, want in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("user/app", "docker.io/user/app:latest"),
            ("host:5000/a/b:tag", "host:5000/a/b:tag"),
            ("localhost/app", "localhost/app:latest"),
            ("127.0.0.1:5000/app@" + digest, "127.0.0.1:5000/app@" + digest),
            ("ghcr.io/o/r:t@" + digest, "ghcr.io/o/r:t@" + digest),
            ("Busybox", None),
            ("a b", None),
        ]:
            self.assertEqual(image.normalize_reference(ref), want, ref)

    def test_chain_id(self):
        # identity.ChainID: the first diff ID, then sha256("<chain> <next>").
        self.assertEqual(image.chain_id([]), "")
        self.assertEqual(image.chain_id(DIFF_IDS[:1]), DIFF_IDS[0])
        want = "sha256:" + hashlib.sha256((DIFF_IDS[0] + " " + DIFF_IDS[1]).encode()).hexdigest()
        self.assertEqual(image.chain_id(DIFF_IDS), want)

    def test_resolve_manifest(self):
        store = Store()
        m = one_image(store, ["echo", "hi"])
        img = image.resolve(store.read, "x", m)
        self.assertEqual(img.manifest, m)
        self.assertEqual(img.chain_id, image.chain_id(DIFF_IDS))
        self.assertEqual(img.runtime_config["Cmd"], ["echo", "hi"])

    def test_resolve_index_by_platform(self):
        store = Store()
        arm = one_image(store, ["arm"], "arm64")
        amd = one_image(store, ["amd"])
        absent = {"mediaType": image.MEDIA_TYPE_OCI_MANIFEST, "digest": "sha256:" + "f" * 64, "size": 9,
                  "platform": {"os": "linux", "architecture": "amd64", "variant": "v3"}}
        nested = store.add(blob(image.MEDIA_TYPE_OCI_INDEX, {"schemaVersion": 2, "manifests": [
            dict(arm, platform={"os": "linux", "architecture": "arm64", "variant": "v8"})]}))
        index = store.add(blob(image.MEDIA_TYPE_OCI_INDEX, {"schemaVersion": 2, "manifests": [
            dict(arm, platform={"os": "linux", "architecture": "arm64"}), absent,
            dict(amd, platform={"os": "linux", "architecture": "amd64"}), nested]}))
        self.assertEqual(image.resolve(store.read, "x", index).runtime_config["Cmd"], ["amd"])
        self.assertNotIn(absent["digest"], store.reads)  # v3 is not plain amd64
        self.assertEqual(image.resolve(store.read, "x", index, "linux/aarch64").runtime_config["Cmd"], ["arm"])
        with self.assertRaises(berth.NotFound):
            image.resolve(store.read, "x", index, "linux/s390x")
        with self.assertRaises(berth.InvalidArgument):
            image.resolve(store.read, "x", index, "linux")

    def test_resolve_refuses(self):
        store = Store()
        m = one_image(store, ["sh"])
        bad = dict(m)
        store.blobs[m["digest"]] = store.blobs[m["digest"]] + b" "
        with self.assertRaises(berth.FailedPrecondition):  # bytes that are not the digest's
            image.resolve(store.read, "x", bad)
        with self.assertRaises(berth.NotImplemented_):
            image.resolve(store.read, "x", dict(m, mediaType="application/octet-stream"))
        with self.assertRaises(berth.InvalidArgument):
            image.resolve(store.read, "x", dict(m, digest="sha256:short"))
        with self.assertRaises(berth.InvalidArgument):
            image.resolve(store.read, "x", dict(m, size=image.MAX_MANIFEST_SIZE + 1))
        cfg = store.add(blob(image.MEDIA_TYPE_OCI_CONFIG, {"rootfs": {"diff_ids": DIFF_IDS[:1]}}))
        two = store.add(blob(image.MEDIA_TYPE_OCI_MANIFEST, {"config": cfg, "layers": [cfg, cfg]}))
        with self.assertRaisesRegex(berth.InvalidArgument, "1 diff IDs for 2 layers"):
            image.resolve(store.read, "x", two)


class SpecTest(unittest.TestCase):
    def test_with_image_config(self):
        s = spec.generate("ns", "c", spec.IMAGE_ROOT, ["sh"], readonly=False)
        spec.with_image_config(s, {"Entrypoint": ["/bin/app"], "Cmd": ["-v"], "Env": ["PATH=/bin", "A=1"],
                                   "WorkingDir": "/srv", "User": "1000"})
        p = s["process"]
        self.assertEqual(p["args"], ["/bin/app", "-v"])
        self.assertEqual(p["env"], ["PATH=/bin", "A=1"])  # the image's PATH replaces the default
        self.assertEqual(p["cwd"], "/srv")
        self.assertEqual(p["user"], {"uid": 1000, "gid": 0})
        self.assertEqual(s["root"], {"path": "rootfs", "readonly": False})
        spec.with_image_config(s, {"User": "5:6"})
        self.assertEqual(p["user"], {"uid": 5, "gid": 6})
        self.assertEqual(p["args"], ["/bin/app", "-v"])  # no Entrypoint nor Cmd: kept

    def test_with_image_config_refuses(self):
        s = spec.generate("ns", "c", spec.IMAGE_ROOT, ["sh"])
        for cfg, exc in [({"User": "nobody"}, berth.NotImplemented_), ({"User": "1:staff"}, berth.NotImplemented_),
                         ({"WorkingDir": "rel"}, berth.InvalidArgument), ({"Env": ["=x"]}, berth.InvalidArgument),
                         ({"Env": ["NOVALUE"]}, berth.InvalidArgument)]:
            with self.assertRaises(exc, msg=cfg):
                spec.with_image_config(s, cfg)


class OutputTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, self.dir)

    def test_writer_comes_and_goes(self):
        with cio.Output("p", stdout=True, stderr=True, fifo_dir=self.dir) as out:
            st = out.stdio()
            self.assertEqual(os.listdir(self.dir), [os.path.basename(out.dir)])
            self.assertEqual(sorted(os.listdir(out.dir)), ["stderr", "stdout"])
            # A writer that opens non-blocking, as the shim does, succeeds
            # because the reader is there already.
            fd = os.open(st.stdout, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"hello\n")
            os.write(fd, b"world\n")
            os.close(fd)
            with open(st.stderr, "wb") as f:
                f.write(b"oops\n")
            self.assertTrue(out.wait(timeout=30), "the copiers did not end after their writers left")
            self.assertEqual(out.stdout, b"hello\nworld\n")
            self.assertEqual(out.stderr, b"oops\n")
        self.assertEqual(os.listdir(self.dir), [])

    def test_no_writer_until_cancel(self):
        sink = []
        lock = threading.Lock()

        class Sink:
            def write(self, data):
                with lock:
                    sink.append(data)

        out = cio.Output("p", stdout=Sink(), stderr=False, fifo_dir=self.dir)
        self.assertEqual(out.stdio().stderr, "")
        self.assertFalse(out.wait(timeout=0.3), "a copier ended before any writer came")
        out.cancel()
        self.assertTrue(out.wait(timeout=30))
        out.close()
        self.assertEqual(sink, [])
        self.assertEqual(out.stdout, b"")  # given to a sink, not captured
        self.assertEqual(os.listdir(self.dir), [])


if __name__ == "__main__":
    unittest.main()

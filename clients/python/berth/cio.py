"""The client side of a task's output, as the Go io/cio package does it:
FIFOs in a folder of their own under a FIFO dir, opened for reading
before the task is created, and one thread per FIFO copying what the
shim writes.

The shim drops output while no reader has a FIFO open, so the read ends
are open (non-blocking, so that the shim's open for writing succeeds)
when Output returns. read(2) on a FIFO gives 0 bytes both before any
writer came and after the last one left; Linux reports POLLHUP to a
reader only once a writer has connected since the reader opened, so a
copier ends at POLLHUP with an empty FIFO, and waits otherwise.

Lifecycle: Output(...) -> stdio() into CreateTaskRequest -> the task runs
and exits -> delete the task -> cancel() -> wait() -> close() (or use it
as a context manager, whose exit does the last three).
"""

import os
import select
import shutil
import stat
import tempfile
import threading

from .gen import types_pb2

# DEFAULT_FIFO_DIR is where Output makes its folder unless told otherwise:
# in berthd's default state folder, under a name no namespace has, which
# a restarting daemon leaves alone (the Go client's cio.DefaultFIFODir).
DEFAULT_FIFO_DIR = "/run/berth/.fifo"

_CHUNK = 32 << 10  # bytes read at a time
_TICK_MS = 100  # how often a copier waiting for the shim looks at cancel


class Output:
    """FIFOs for a process's stdout and, when asked, stderr.

    Each of stdout and stderr is False (no FIFO: the shim discards the
    stream), True (captured: read it from .stdout / .stderr once wait()
    returned) or a binary file object that each chunk is written to as it
    arrives (one thread writes to it at a time, so one object may serve
    both). The folder is made 0700 under fifo_dir (made if needed).
    """

    def __init__(self, process_id, stdout=True, stderr=False, fifo_dir=DEFAULT_FIFO_DIR):
        self._cancelled = threading.Event()
        self._wlock = threading.Lock()  # one sink written at a time
        self._threads = []
        self._fds = []
        self._captured = {}  # name -> bytearray, for streams captured here
        self._paths = {}  # name -> FIFO path
        os.makedirs(fifo_dir, mode=0o700, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix=process_id + "-", dir=fifo_dir)
        try:
            for name, sink in (("stdout", stdout), ("stderr", stderr)):
                if sink is False or sink is None:
                    continue
                path = os.path.join(self.dir, name)
                os.mkfifo(path, 0o600)
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
                self._fds.append(fd)
                if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                    raise OSError("%s: not a FIFO" % path)
                self._paths[name] = path
                if sink is True:
                    self._captured[name] = bytearray()
                    sink = self._captured[name]
                t = threading.Thread(target=self._copy, args=(fd, sink), name="cio-" + name, daemon=True)
                self._threads.append(t)
            for t in self._threads:
                t.start()
        except BaseException:
            self.close()
            raise

    def stdio(self):
        """The types.v1 Stdio to send in the CreateTaskRequest."""
        return types_pb2.Stdio(stdout=self._paths.get("stdout", ""), stderr=self._paths.get("stderr", ""))

    @property
    def stdout(self):
        """The captured stdout (bytes); b"" when it was not captured."""
        return bytes(self._captured.get("stdout", b""))

    @property
    def stderr(self):
        return bytes(self._captured.get("stderr", b""))

    def cancel(self):
        """Stop waiting for the shim: copiers end once their FIFO is empty.
        Call it once the process is gone (its task deleted)."""
        self._cancelled.set()

    def wait(self, timeout=None):
        """Returns when every copier has ended (the writer came and went and
        the FIFO is empty, or cancel); False when timeout passed first."""
        for t in self._threads:
            t.join(timeout)
            if t.is_alive():
                return False
        return True

    def close(self):
        """Cancels, waits, closes the read ends and removes the folder."""
        self.cancel()
        self.wait()
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _copy(self, fd, sink):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            events = poller.poll(_TICK_MS)
            hup = any(ev & (select.POLLHUP | select.POLLERR) for _, ev in events)
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:  # a writer is there, the FIFO is empty
                data = None
            if data:
                self._write(sink, data)
                continue
            if hup and data == b"":
                return  # the writer came and went, and the FIFO is empty
            if self._cancelled.is_set():
                return

    def _write(self, sink, data):
        with self._wlock:
            if isinstance(sink, bytearray):
                sink.extend(data)
            else:
                sink.write(data)

"""One writer at a time per index: a lease object beside the manifest.

Every command that changes an index (``index``, ``reindex``, ``enroll``, ``people`` corrections,
``forget``, and ``vidx serve`` when it runs one of them) holds ``OUT/_writer.json`` while it
works: who holds it (command, host, pid), since when, and when it last renewed it.  A second
writer that finds a live lease stops at once with a message naming the holder; readers (query,
serve, people list) never take it.  Without it two jobs on one index would each rewrite the
manifest from their own copy and the last would silently drop the other's commits.

A lease is live while it was renewed within :data:`TTL_S` seconds (a thread renews it every
``TTL_S / 4``) and, when its holder ran on this host, while that process exists: a job killed
with ``kill -9`` leaves a lease the next run on the same machine takes over at once; one
killed on another machine is taken over ``TTL_S`` seconds after its last renewal.

Atomicity: on a local filesystem the lease is created with ``O_EXCL`` and a stale one is moved
aside with an atomic rename, so two writers can never both hold it.  pyarrow's S3 and GCS
filesystems have no create-if-absent, so there a writer puts its lease, waits
:data:`SETTLE_S`, and reads it back: of two writers starting within that window the one whose
lease is read back wins and the other stops.  A holder that finds on renewal that its lease
was taken over (it stalled past ``TTL_S``) marks it lost, and its next manifest write raises
instead of overwriting the new holder's work.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable, Iterator

import pyarrow.fs as pafs

from vidx.indexing.store import MANIFEST, IndexError_, Store

log = logging.getLogger(__name__)

LEASE = "_writer.json"
TTL_S = 60.0
SETTLE_S = 0.5


class WriterBusy(IndexError_):
    """Another command is writing this index."""


class LeaseLost(IndexError_):
    """This writer's lease was taken over: it must not commit."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


class Lease:
    def __init__(self, store: Store, command: str):
        self.store, self.command = store, command
        self.owner = uuid.uuid4().hex
        self.lost = False
        self._since = time.time()
        self._made_root = False  # a new local index folder this lease created (removed if left empty)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> str:
        return self.store.path(LEASE)

    def _body(self) -> bytes:
        now = time.time()
        return json.dumps({"owner": self.owner, "command": self.command, "host": socket.gethostname(),
                           "pid": os.getpid(), "since": self._since, "renewed": now}).encode()

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.store.read_bytes(LEASE))
        except FileNotFoundError:
            return None
        except OSError as e:
            if self.store.fs.get_file_info(self.path).type == pafs.FileType.NotFound:
                return None
            raise e
        except ValueError:  # half-written by a crash on a filesystem without atomic writes
            return {}

    @staticmethod
    def live(held: dict[str, Any] | None) -> bool:
        if not held:
            return False
        if time.time() - float(held.get("renewed", 0)) > TTL_S:
            return False
        if held.get("host") == socket.gethostname() and not _alive(int(held.get("pid", -1))):
            return False  # killed on this machine: no need to wait for it to expire
        return True

    def _busy(self, held: dict[str, Any]) -> WriterBusy:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(held.get("since", 0))))
        return WriterBusy(f"{self.store.uri} is being written by another vidx command ({held.get('command')}, "
                          f"pid {held.get('pid')} on {held.get('host')}, since {since}); wait for it to end. "
                          f"If it died, its lock ({LEASE}) expires {TTL_S:.0f} s after its last renewal")

    def acquire(self) -> None:
        if isinstance(self.store.fs, pafs.LocalFileSystem):
            self._acquire_local()
        else:
            held = self._read()
            if self.live(held):
                raise self._busy(held)
            self.store.write_bytes(LEASE, self._body())
            time.sleep(SETTLE_S)  # a racing writer's put lands within this; the last put wins
            held = self._read()
            if not held or held.get("owner") != self.owner:
                raise self._busy(held or {})
        self._thread = threading.Thread(target=self._renew_loop, name="vidx-lease", daemon=True)
        self._thread.start()

    def _acquire_local(self) -> None:
        self._made_root = not os.path.exists(self.store.root)  # a new index: gone again if it stays empty
        os.makedirs(self.store.root, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = self._read()
                if self.live(held):
                    raise self._busy(held) from None
                with contextlib.suppress(FileNotFoundError):  # only one of two takers renames it
                    os.rename(self.path, f"{self.path}.stale-{self.owner}")
                    os.unlink(f"{self.path}.stale-{self.owner}")
                    log.info("took over the write lock of a command that is gone (%s)", held)
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(self._body())
            return
        raise self._busy(self._read() or {})

    def _renew_loop(self) -> None:
        while not self._stop.wait(TTL_S / 4):
            with contextlib.suppress(OSError):
                self.renew()

    def renew(self) -> None:
        held = self._read()
        if not held or held.get("owner") != self.owner:
            if not self.lost:
                log.error("the write lock of %s was taken over by %s; this command will not commit",
                          self.store.uri, held)
            self.lost = True
            return
        self.store.write_bytes(LEASE, self._body())

    def check(self) -> None:
        if self.lost:
            raise LeaseLost(f"{self.store.uri}: this command's write lock was taken over (it stalled longer than "
                            f"{TTL_S:.0f} s); nothing more is committed. Run it again")

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            held = self._read()
            if held and held.get("owner") == self.owner:
                self.store.fs.delete_file(self.path)
            if self._made_root and not os.listdir(self.store.root):
                os.rmdir(self.store.root)  # the command stopped before writing anything


_held: dict[str, tuple[Lease, int]] = {}  # uri -> (lease, depth): nested writers in one process share it
_locks: dict[str, threading.RLock] = {}
_guard = threading.Lock()


def held(store: Store) -> Lease | None:
    return _held.get(store.path(""), (None, 0))[0]


@contextlib.contextmanager
def writing(out: str, command: str) -> Iterator[Lease | None]:
    """Hold ``out``'s write lease for the block.  Nested blocks of one process (``forget`` runs
    the people refresh) share the outer lease; threads of one process (``vidx serve``) take
    turns.  A folder that is not an index yet is leased only by ``index``, which creates it."""
    store = Store(out)
    key = store.path("")
    with _guard:
        lock = _locks.setdefault(key, threading.RLock())
    with lock:
        if key in _held:
            lease, depth = _held[key]
            _held[key] = (lease, depth + 1)
            try:
                yield lease
            finally:
                _held[key] = (lease, _held[key][1] - 1)
            return
        if (store.missing_bucket() if command == "index" else not store.exists(MANIFEST)):
            yield None  # not an index (or no bucket): the command itself says so
            return
        lease = Lease(store, command)
        lease.acquire()
        _held[key] = (lease, 1)
        try:
            yield lease
        finally:
            del _held[key]
            lease.release()


def writes_index(command: str) -> Callable:
    """Decorate a function with an ``out`` argument so that it runs holding that index's lease."""

    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            out = sig.bind(*args, **kwargs).arguments["out"]
            with writing(out, command):
                return fn(*args, **kwargs)

        return wrapper

    return deco

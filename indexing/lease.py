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

Atomicity: the lease is compare-and-swap on every store (:mod:`vidx.indexing.objects`): it is
created only if absent (``os.link`` on a local disk, ``If-None-Match: *`` on S3, GCS and Azure),
and renewed, or a dead holder's lease taken over, only if it is the very version read before
(a file's inode and mtime under an ``flock``; the object's ETag).  Two writers can never both
hold it, however slow a write.  A holder whose renewal finds its lease changed marks it lost;
every commit, compaction, file deletion and manifest write checks the lease first
(:meth:`Lease.check`: a lease not confirmed within ``TTL_S / 2`` is renewed there and then), so
a writer that stalled past ``TTL_S`` and was taken over commits nothing more.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from typing import Any, Callable, Iterator

import pyarrow.fs as pafs

from vidx.indexing.objects import AlreadyExists, Changed, Objects
from vidx.indexing.store import MANIFEST, WRITER_CHECKS, Store
from vidx.configs.errors import LeaseLost, WriterBusy  # noqa: F401 - defined there, raised here

log = logging.getLogger(__name__)

LEASE = "_writer.json"
TTL_S = 60.0


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
        self._tag = ""  # the lease object's version as this holder last wrote it
        self._confirmed = 0.0  # when that write started (the lease holds for TTL_S from then)
        self._made_root = False  # a new local index folder this lease created (removed if left empty)
        self._objects = Objects(store.uri, store.fs.type_name, store.root)
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> str:
        return self.store.path(LEASE)

    def _body(self) -> bytes:
        now = time.time()
        return json.dumps({"owner": self.owner, "command": self.command, "host": socket.gethostname(),
                           "pid": os.getpid(), "since": self._since, "renewed": now}).encode()

    def _read(self) -> tuple[dict[str, Any], str] | None:
        got = self._objects.read(LEASE)
        if got is None:
            return None
        try:
            return json.loads(got[0]), got[1]
        except ValueError:  # not a lease vidx wrote whole: treat as expired
            return {}, got[1]

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
            self._made_root = not os.path.exists(self.store.root)  # a new index: gone again if it stays empty
            os.makedirs(self.store.root, exist_ok=True)
        held: dict[str, Any] = {}
        for _ in range(5):
            got = self._read()
            t0 = time.time()
            try:
                if got is None:
                    self._tag = self._objects.create(LEASE, self._body())
                else:
                    held, tag = got
                    if self.live(held):
                        raise self._busy(held)
                    self._tag = self._objects.replace(LEASE, self._body(), tag)
                    log.info("took over the write lock of a command that is gone (%s)", held)
            except (AlreadyExists, Changed):
                continue  # another writer created or took it in between: look again
            self._confirmed = t0
            break
        else:
            got = self._read()
            raise self._busy(got[0] if got else held)
        self._thread = threading.Thread(target=self._renew_loop, name="vidx-lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(TTL_S / 4):
            with contextlib.suppress(OSError):
                self.renew()

    def renew(self) -> None:
        """Write the lease again if it is still this holder's version; mark it lost otherwise."""
        with self._mutex:
            if self.lost:
                return
            t0 = time.time()
            try:
                self._tag = self._objects.replace(LEASE, self._body(), self._tag)
            except Changed:
                got = self._read()
                log.error("the write lock of %s was taken over by %s; this command will not commit",
                          self.store.uri, got[0] if got else None)
                self.lost = True
                return
            self._confirmed = t0

    def check(self) -> None:
        """Raise LeaseLost unless this holder's lease is confirmed to hold now (renewed here when
        its last confirmation is older than TTL_S / 2)."""
        if not self.lost and time.time() - self._confirmed > TTL_S / 2:
            self.renew()
        if self.lost:
            raise LeaseLost(f"{self.store.uri}: this command's write lock was taken over (it stalled longer than "
                            f"{TTL_S:.0f} s); nothing more is committed. Run it again")

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            got = self._read()
            if got and got[1] == self._tag and got[0].get("owner") == self.owner:
                self._objects.delete(LEASE)
            if self._made_root and not [n for n in os.listdir(self.store.root) if n != LEASE + ".lock"]:
                shutil.rmtree(self.store.root)  # the command stopped before writing anything


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
        WRITER_CHECKS[key] = lease.check  # every commit of this process checks it (Store.check_writer)
        try:
            yield lease
        finally:
            del _held[key]
            WRITER_CHECKS.pop(key, None)
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

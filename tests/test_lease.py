"""One writer at a time per index (indexing/lease.py): a second writer is refused with the
holder's name, a killed holder's lease is taken over, a writer whose lease was taken over
cannot commit, readers never need it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from synthetic_index import person_vectors, write_index
from vidx.indexing import lease as lease_mod
from vidx.indexing.lease import LEASE, LeaseLost, WriterBusy, writing
from vidx.indexing.store import Store

VIDX = os.path.join(os.path.dirname(sys.executable), "vidx")
HOLD = """
import sys, time
from vidx.indexing.lease import writing
with writing(sys.argv[1], "index"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def index_dir(tmp_path):
    out = tmp_path / "idx"
    v = person_vectors(2)
    write_index(out, {"vid1": [("t1", 0.0, 3.0, v[0]), ("t2", 1.0, 4.0, v[1])]})
    return out


def hold_in_another_process(out):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over(index_dir, monkeypatch):
    proc = hold_in_another_process(index_dir)
    try:
        with pytest.raises(WriterBusy, match=rf"another vidx command \(index, pid {proc.pid} on "):
            with writing(str(index_dir), "enroll"):
                pass
        # the CLI says it in one line and changes nothing
        before = (index_dir / "manifest.json").read_bytes()
        p = subprocess.run([VIDX, "reindex", str(index_dir)], capture_output=True, text=True)
        assert p.returncode == 2 and "is being written by another vidx command (index" in p.stderr
        assert "Traceback" not in p.stderr and (index_dir / "manifest.json").read_bytes() == before
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # killed on this machine: taken over at once, not after the lease's TTL (the killed holder's
    # lease is still fresh, so only the dead pid lets it go; acquire never waits: it refuses a live one)
    dead = json.loads((index_dir / LEASE).read_bytes())
    assert dead["pid"] == proc.pid and time.time() - float(dead["renewed"]) < lease_mod.TTL_S / 2

    def no_wait(s):  # taking over a dead holder's lease never waits for it
        raise AssertionError(f"the takeover slept {s} s")

    monkeypatch.setattr(lease_mod.time, "sleep", no_wait)
    with writing(str(index_dir), "reindex") as held:
        assert held is not None and json.loads((index_dir / LEASE).read_bytes())["pid"] == os.getpid()
    monkeypatch.undo()
    assert not (index_dir / LEASE).exists()  # released
    assert not [p for p in index_dir.iterdir() if ".stale-" in p.name]


def _foreign(out, renewed_ago: float):
    (out / LEASE).write_text(json.dumps({"owner": "x", "command": "index", "host": "other-" + socket.gethostname(),
                                         "pid": 1, "since": time.time() - 999, "renewed": time.time() - renewed_ago}))


def test_a_lease_from_another_machine_holds_until_it_expires(index_dir):
    _foreign(index_dir, renewed_ago=5)
    with pytest.raises(WriterBusy, match="expires 60 s after its last renewal"):
        with writing(str(index_dir), "forget"):
            pass
    _foreign(index_dir, renewed_ago=lease_mod.TTL_S + 5)  # its holder stopped renewing: gone
    with writing(str(index_dir), "forget") as held:
        assert held.owner == json.loads((index_dir / LEASE).read_bytes())["owner"]


def test_a_writer_whose_lease_was_taken_over_cannot_commit(index_dir):
    store = Store(str(index_dir))
    with writing(str(index_dir), "index") as held:
        m = store.read_manifest()
        store.write_manifest(m)  # fine while held
        _foreign(index_dir, renewed_ago=0)  # it stalled; another writer took over
        held.renew()
        assert held.lost
        with pytest.raises(LeaseLost, match="taken over"):
            store.write_manifest(m)
    assert json.loads((index_dir / LEASE).read_bytes())["owner"] == "x"  # the new holder's lease is left alone


class _SpyLock:
    """The per-index lock, telling when a thread other than its creator asks for it."""

    def __init__(self):
        self.inner, self.owner, self.asked = threading.RLock(), threading.current_thread(), threading.Event()

    def __enter__(self):
        if threading.current_thread() is not self.owner:
            self.asked.set()
        self.inner.acquire()
        return self

    def __exit__(self, *exc):
        self.inner.release()


def test_nested_writers_share_a_lease_and_threads_take_turns(index_dir):
    from vidx.indexing.store import Store

    order = []
    spy = lease_mod._locks[Store(str(index_dir)).path("")] = _SpyLock()
    with writing(str(index_dir), "forget") as outer:
        with writing(str(index_dir), "reindex") as inner:  # forget runs the people refresh
            assert inner is outer

        def other():
            with writing(str(index_dir), "people"):
                order.append("other")

        th = threading.Thread(target=other)
        th.start()
        assert spy.asked.wait(10)  # the other thread is at the lock (no sleep: an event)
        order.append("first")  # it waits for this block to end
    th.join(timeout=10)
    assert order == ["first", "other"] and not (index_dir / LEASE).exists()


def test_no_lease_is_left_in_a_folder_that_is_not_an_index(tmp_path):
    with writing(str(tmp_path), "enroll") as held:
        assert held is None
    assert list(tmp_path.iterdir()) == []


def test_readers_do_not_need_the_lease(index_dir):
    assert subprocess.run([VIDX, "reindex", str(index_dir)], capture_output=True).returncode == 0
    proc = hold_in_another_process(index_dir)
    try:
        p = subprocess.run([VIDX, "people", "list", str(index_dir)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    finally:
        proc.kill()
        proc.wait()


def test_a_command_that_stops_before_writing_leaves_no_folder(tmp_path):
    out = tmp_path / "new-index"
    with writing(str(out), "index"):
        assert (out / LEASE).exists()
    assert not out.exists()

"""Redaction as a job for ``vidx serve``: a request starts one and is answered at once; one worker
thread runs the jobs one after another (a redaction uses every core: two at once would only
share them), and each job's progress (frames done of the two passes, rate, time left) and
result or one-line failure can be read at any time, so a page can reload and find it again.

Jobs live as long as the server; the copies they write sit in the server's export folder.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass
class RedactJob:
    """One redaction: what was asked, where it stands, and its result or its failure."""

    id: str
    video_id: str
    file: str  # the copy's file name in the export folder
    keep: list[str] | None
    only: list[str] | None
    style: str
    state: str = "queued"  # queued | running | done | failed
    phase: str = ""  # find (faces on every frame) | write (blur and encode)
    done: int = 0  # frames done over both passes
    total: int | None = None  # frames of both passes (2 x the video's), when known
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    result: dict[str, Any] | None = None

    def view(self, position: int | None = None) -> dict[str, Any]:
        """The job as the API shows it: progress, rate, seconds left, and the download link when done."""
        d = asdict(self)
        now = self.finished_at or time.time()
        ran = now - self.started_at if self.started_at else 0.0
        d["rate"] = round(self.done / ran, 1) if ran > 0 and self.done else None  # frames a second, both passes
        d["eta_s"] = round((self.total - self.done) / d["rate"], 1) \
            if self.state == "running" and self.total and d["rate"] else None
        d["percent"] = round(100.0 * self.done / self.total, 1) if self.total else None
        d["url"] = f"/api/exports/{self.file}" if self.state == "done" else None
        d["ahead"] = position  # jobs queued before this one
        return d


class RedactJobs:
    """The job queue and its one worker.  ``run(job, progress)`` does the work (``vidx.jobs.redact``
    with ``progress`` as its callback) and returns the result's summary; a RedactError (or any
    exception) fails the job with its message."""

    def __init__(self, run: Callable[[RedactJob, Callable[[str, int, int | None], None]], dict[str, Any]]):
        self._run = run
        self._jobs: dict[str, RedactJob] = {}
        self._queue: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def submit(self, video_id: str, file_stem: str, keep: list[str] | None, only: list[str] | None,
               style: str) -> RedactJob:
        """A job for this request: the one already queued, running or done for the same request,
        else a new one at the end of the queue."""
        tag = hashlib.sha256(repr((video_id, keep, only, style)).encode()).hexdigest()[:10]
        with self._lock:
            for j in self._jobs.values():
                if j.file == f"{file_stem}.redacted-{tag}.mp4" and j.state != "failed":
                    return j
            job = RedactJob(uuid.uuid4().hex[:12], video_id, f"{file_stem}.redacted-{tag}.mp4", keep, only, style)
            self._jobs[job.id] = job
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="vidx-redact", daemon=True)
                self._worker.start()
        self._queue.put(job.id)
        return job

    def get(self, job_id: str) -> RedactJob | None:
        return self._jobs.get(job_id)

    def views(self, video_id: str | None = None) -> list[dict[str, Any]]:
        """Every job (of one video, if given), oldest first, with how many are queued ahead of each."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.queued_at)
        ahead, out = 0, []
        for j in jobs:
            if j.state == "queued":
                pos, ahead = ahead + self._running(), ahead + 1
            else:
                pos = None
            if video_id is None or j.video_id == video_id:
                out.append(j.view(pos))
        return out

    def view(self, job: RedactJob) -> dict[str, Any]:
        return next(v for v in self.views() if v["id"] == job.id)

    def _running(self) -> int:
        return sum(j.state == "running" for j in self._jobs.values())

    def _work(self) -> None:
        while True:
            job = self._jobs[self._queue.get()]
            job.state, job.started_at = "running", time.time()

            def progress(phase: str, done: int, total: int | None, job=job) -> None:
                job.phase = phase
                if phase == "find":
                    job.done, job.total = done, 2 * total if total else None
                else:  # the second pass knows the frame count exactly
                    job.done, job.total = total + done, 2 * total

            try:
                job.result = self._run(job, progress)
                job.state = "done"
            except Exception as e:  # noqa: BLE001 - a job's failure is its one-line reason, shown to the user
                job.error = str(e).splitlines()[0] if str(e) else type(e).__name__
                job.state = "failed"
                log.warning("redaction %s of %s failed: %s", job.id, job.video_id, job.error)
            finally:
                job.finished_at = time.time()
                self._queue.task_done()

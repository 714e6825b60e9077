"""Shared fixtures and the rules for the `media` and `gpu` markers.

* `media` tests read real photos and clips from ../shared/data (relative to the repository
  root).  Locally they skip when it is missing; in CI (CI=true) they fail, so a missing data
  folder can never turn into a green run.
* `gpu` tests skip when torch sees no CUDA device.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# No test fetches anything: weights that are not staged are refused by vidx itself (workers/actions.py),
# so a run gives the same result with a network and without one.  Subprocesses inherit it.
os.environ["VIDX_OFFLINE"] = "1"
DATA = Path(os.environ.get("VIDX_TEST_DATA", ROOT.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    import torch

    has_cuda = torch.cuda.is_available()
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="no CUDA device"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "MANIFEST.tsv").is_file():
        msg = f"real media not found at {DATA} (expected MANIFEST.tsv there)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must have ../shared/data", pytrace=False)
        pytest.skip(msg)
    return DATA


@pytest.fixture(scope="session")
def faces_dir(data_dir) -> Path:
    return data_dir / "faces"


@pytest.fixture(scope="session")
def engine():
    from vidx.workers.faces import FaceEngine

    return FaceEngine(device="cpu")


@pytest.fixture(scope="session")
def sface_engine():
    """The index's default pipeline for photos: RetinaFace and SFace (cosine distances)."""
    from vidx.workers.faces import FaceEngine

    return FaceEngine(device="cpu", detector="retinaface", embedder="sface")


@pytest.fixture(scope="session")
def random_r3d(tmp_path_factory) -> Path:
    """A randomly initialised r3d_18 saved where staged weights go, under torchvision's file name
    (no Kinetics weights can be fetched on the test machines)."""
    import torch
    from torchvision.models import get_model

    from vidx.workers import actions

    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    torch.save(get_model("r3d_18", weights=None, num_classes=400).state_dict(), d / actions.expected_file("r3d_18"))
    return d


@contextlib.contextmanager
def served_page(out, env=None):
    """`vidx serve OUT` on a free port and a headless Chromium page (Debian's chromium through
    Playwright): yields (page, base url, errors: page errors and console errors).  Without chromium: a failure in CI (.ci/run
    installs it), a skip elsewhere."""
    import shutil
    import socket
    import subprocess
    import sys
    import time

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        msg = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; .ci/run installs it", pytrace=False)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "vidx.jobs.cli", "serve", str(out), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(server.stderr.read()[-3000:])
                time.sleep(0.1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # a console error (a 404 for the favicon, a failed fetch the page did not expect) looks
            # broken to anyone with the developer tools open and hides real errors: each test fails on it
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text} ({m.location.get('url', '')})")
                    if m.type == "error" else None)
            yield page, f"http://127.0.0.1:{port}", errors
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def committed_chunks(fs, root: str) -> int:
    """Chunks whose detections the index at ``root`` on ``fs`` commits (its Delta log)."""
    from vidx.indexing.delta_log import DeltaLog
    from vidx.indexing.tables import chunk_keys

    snap = DeltaLog(fs, f"{root}/face_detections").snapshot()
    return len({k for p in snap.files.values() for k in chunk_keys(p)})


def sigkill_when_committed(cmd: list[str], env: dict, count, at_least: int = 1, timeout: float = 300) -> None:
    """Run ``cmd`` (a ``vidx index``), SIGKILL it once ``count()`` says ``at_least`` chunks are
    committed (it may raise OSError / ValueError while there is none, or half of one), then stop
    the Ray it leaves behind so the next run starts clean."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if count() >= at_least:
                    break
            except (OSError, ValueError):
                pass
            if proc.poll() is not None:
                pytest.fail("the job finished before it could be killed; give it more work")
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"], capture_output=True, env=env)


# ------------------------------------------------------------------ the suite's own report
# After every run: test-artifacts/test-report.json (counts, wall time, the slowest tests), which
# bench/readme_tests.py writes into the README's test section (its numbers are never typed by hand).
_T0 = {}


def pytest_sessionstart(session):
    import time

    _T0["t"] = time.time()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    import json
    import platform
    import time

    stats = terminalreporter.stats
    counts = {k: len([r for r in stats.get(k, []) if getattr(r, "when", "call") in ("call", "setup")])
              for k in ("passed", "failed", "skipped", "error")}
    durs: dict[str, float] = {}
    for k in ("passed", "failed"):
        for r in stats.get(k, []):
            durs[r.nodeid] = durs.get(r.nodeid, 0.0) + float(getattr(r, "duration", 0.0))
    slow = sorted(durs.items(), key=lambda x: -x[1])[:10]
    report = {"date": time.strftime("%Y-%m-%d"), "counts": counts, "exit": int(exitstatus),
              "wall_s": round(time.time() - _T0.get("t", time.time()), 1), "ci": bool(os.environ.get("CI")),
              "cpus": os.cpu_count(), "python": platform.python_version(),
              "args": list(config.invocation_params.args),
              "slowest": [{"test": n, "s": round(d, 1)} for n, d in slow]}
    out = Path(os.environ.get("VIDX_SCREENSHOTS", ROOT / "test-artifacts"))
    with contextlib.suppress(OSError):
        out.mkdir(parents=True, exist_ok=True)
        (out / "test-report.json").write_text(json.dumps(report, indent=1) + "\n")

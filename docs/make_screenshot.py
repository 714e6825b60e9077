"""Make docs/serve-demo.png: the page of `vidx serve` on the demo index (public-domain media).

    python docs/make_screenshot.py            # needs Debian's chromium and the test extras

Builds demo media and an index in a temporary folder (vidx demo, vidx index --no-actions,
vidx enroll), serves it, searches with the turned astronaut photo, opens the timeline and
saves the screenshot next to this file.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(*args):
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    subprocess.run([sys.executable, "-m", "vidx.jobs.cli", *map(str, args)], check=True, env=env)


def main() -> int:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="vidx-shot-"))
    try:
        run("demo", tmp / "demo")
        run("index", tmp / "demo", "--out", tmp / "idx", "--no-actions")
        run("enroll", tmp / "idx", "--name", "Eileen Collins", tmp / "demo" / "astronaut.jpg")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "vidx.jobs.cli", "serve", str(tmp / "idx"), "--port", str(port)])
        try:
            for _ in range(300):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=[
                    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
                page = browser.new_page(viewport={"width": 1100, "height": 760})
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("#stats:has-text('appearance')")
                page.set_input_files("#photo", str(tmp / "demo" / "astronaut_turned.jpg"))
                page.click("#search-btn")
                page.wait_for_selector(".card").click()
                page.wait_for_selector("#timeline .bar")
                page.wait_for_function("document.getElementById('player').readyState >= 2", timeout=30_000)
                page.wait_for_timeout(1500)
                page.screenshot(path=str(HERE / "serve-demo.png"), full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(HERE / "serve-demo.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

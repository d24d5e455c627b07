"""End-to-end fixtures: a real `voxline run` server, a static server for the cross-origin
case, and Debian Chromium driven by Python Playwright with a fake microphone that plays an
espeak-ng WAV.

Never runs `playwright install`: the browser is /usr/bin/chromium (override with
VOXLINE_E2E_CHROMIUM). Artifacts (screenshots, server log, event dumps) go to
`artifacts/e2e/` at the repository root.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB_DIR = ROOT / "src" / "voxline" / "web"
ARTIFACTS = ROOT / "artifacts" / "e2e"
VENV_BIN = Path(sys.executable).parent
CHROMIUM = os.environ.get("VOXLINE_E2E_CHROMIUM", "/usr/bin/chromium")
QUESTION = "What is the capital of France?"

BASE_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


# --------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(method: str, url: str, body: dict | None = None, timeout: float = 5.0, token: str = "",
              secret: str = ""):
    """(status, parsed JSON or text) without raising on HTTP errors; `secret` is a session's
    X-Session-Token (what its own routes need)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if secret:
        req.add_header("X-Session-Token", secret)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw.decode(errors="replace")


def make_wav(path: Path, text: str, lead_s: float, tail_s: float) -> Path:
    """espeak-ng speech, 16-bit mono, padded with silence (Chromium loops the file)."""
    if not shutil.which("espeak-ng"):
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng)")
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), text], check=True, capture_output=True)
    with wave.open(str(raw), "rb") as w:
        params = w.getparams()
        frames = w.readframes(w.getnframes())
    assert params.sampwidth == 2 and params.nchannels == 1, params
    rate = params.framerate
    silence = lambda s: b"\x00\x00" * int(rate * s)  # noqa: E731
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(silence(lead_s) + frames + silence(tail_s))
    raw.unlink()
    return path


# --------------------------------------------------------------------------- servers
@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for pattern in ("*-failed.png", "*-events.json", "*-pipeline-log.txt", "*-console.txt"):
        for stale in ARTIFACTS.glob(pattern):  # from an earlier run
            stale.unlink()
    return ARTIFACTS


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="session")
def static_server():
    """The web directory on another origin (another port), like `python -m http.server`."""
    port = free_port()
    handler = functools.partial(_QuietHandler, directory=str(WEB_DIR))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()
    httpd.server_close()


@contextlib.contextmanager
def run_server(name: str, artifacts: Path, data_dir: Path, **env_extra: str):
    """`voxline run` on a free port until the block ends; yields its base URL."""
    with run_server_process(name, artifacts, data_dir, **env_extra) as (base, _):
        yield base


@contextlib.contextmanager
def run_server_process(name: str, artifacts: Path, data_dir: Path, **env_extra: str):
    """`voxline run` on a free port until the block ends; yields (base URL, process), so a
    test can signal it mid-call (stopping an exited one is harmless)."""
    exe = VENV_BIN / "voxline"
    if not exe.exists():
        pytest.fail(f"{exe} not found: install the project into the venv (make setup)")
    port = free_port()
    env = dict(os.environ)
    env.update(VOXLINE_DATA_DIR=str(data_dir), VOXLINE_LOG_FORMAT="text", **env_extra)
    log_path = artifacts / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the server's log for as long as it runs; closed at its stop
    proc = subprocess.Popen(
        [str(exe), "run", "--port", str(port)],
        cwd=str(ROOT),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"voxline run exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                status, _ = http_json("GET", f"{base}/healthz", timeout=2)
                if status == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"voxline run: no 200 from /healthz in 180 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def server(static_server, artifacts, tmp_path_factory):
    """The server for most tests: open (no token), limited to ONE session so the 503 path
    is real, with the static server's origin in the CORS allow-list."""
    with run_server(
        "server",
        artifacts,
        tmp_path_factory.mktemp("voxline-data"),
        VOXLINE_MAX_SESSIONS="1",
        VOXLINE_CORS_ORIGINS=f"{static_server},http://localhost:5173,http://127.0.0.1:5173",
    ) as base:
        yield base


TOKEN = "e2e-secret-token"


@pytest.fixture
def token_server(static_server, artifacts, tmp_path_factory):
    """A second server that requires a bearer token (for the cross-origin test)."""
    with run_server(
        "token-server",
        artifacts,
        tmp_path_factory.mktemp("voxline-data-token"),
        VOXLINE_AUTH_TOKEN=TOKEN,
        VOXLINE_CORS_ORIGINS=static_server,
    ) as base:
        yield base


# --------------------------------------------------------------------------- browsers
@pytest.fixture(scope="session")
def playwright_instance():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found (apt-get install chromium)")
    with sync_playwright() as p:
        yield p


def _launch(playwright_instance, wav: Path):
    # No --use-fake-ui-for-media-stream: the microphone is granted per context
    # (permissions=["microphone"]), so one browser also serves the "denied" case, where
    # headless Chromium answers getUserMedia with a real NotAllowedError.
    args = BASE_ARGS + [f"--use-file-for-fake-audio-capture={wav}"]
    return playwright_instance.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)


@pytest.fixture(scope="session")
def question_wav(artifacts) -> Path:
    """The question once, then a long silence (Chromium loops the capture file)."""
    return make_wav(artifacts / "question.wav", QUESTION, lead_s=0.5, tail_s=25.0)


@pytest.fixture(scope="session")
def loop_wav(artifacts) -> Path:
    """The question every ~7 s: for checking that Stop listening really stops turns. The gap
    leaves time for a whole turn even on a loaded machine: a caller who speaks again before
    hearing an answer continues the same turn, so a shorter loop may never get a transcript."""
    return make_wav(artifacts / "question-loop.wav", QUESTION, lead_s=0.3, tail_s=5.0)


@pytest.fixture(scope="session")
def browser(playwright_instance, question_wav):
    b = _launch(playwright_instance, question_wav)
    yield b
    b.close()


@pytest.fixture(scope="session")
def loop_browser(playwright_instance, loop_wav):
    b = _launch(playwright_instance, loop_wav)
    yield b
    b.close()


class PageKit:
    """Opens pages in fresh contexts, collects console output, and cleans up sessions."""

    def __init__(self, request, artifacts: Path):
        self.request = request
        self.artifacts = artifacts
        self.contexts = []
        self.pages = []
        self.console: list[str] = []

    def open(self, browser, url: str, microphone: bool = True):
        ctx = browser.new_context(
            viewport={"width": 1280, "height": 900},
            permissions=["microphone"] if microphone else [],
        )
        self.contexts.append(ctx)
        page = ctx.new_page()
        page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))
        page.goto(url)
        page.wait_for_function("() => window.voxline !== undefined")
        self.pages.append(page)
        return page

    def close(self):
        failed = getattr(self.request.node, "rep_call", None)
        failed = failed is not None and failed.failed
        name = self.request.node.name
        for i, page in enumerate(self.pages):
            with contextlib.suppress(Exception):
                if failed:
                    page.screenshot(path=str(self.artifacts / f"{name}-{i}-failed.png"), full_page=True)
                    events = page.evaluate("() => window.voxline.events")
                    (self.artifacts / f"{name}-{i}-events.json").write_text(json.dumps(events, indent=1))
                    log = page.inner_text("#log")
                    (self.artifacts / f"{name}-{i}-pipeline-log.txt").write_text(log)
            with contextlib.suppress(Exception):
                # End a session the test left open, so the one-session server stays usable.
                loc = page.evaluate("() => window.voxline.location")
                if loc:  # servers without a token ignore it
                    http_json("DELETE", loc, token=TOKEN, secret=page.evaluate("() => window.voxline.sessionToken"))
        if failed and self.console:
            (self.artifacts / f"{name}-console.txt").write_text("\n".join(self.console))
        for ctx in self.contexts:
            with contextlib.suppress(Exception):
                ctx.close()


@pytest.fixture
def pages(request, artifacts):
    kit = PageKit(request, artifacts)
    yield kit
    kit.close()

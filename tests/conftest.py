"""Shared fixtures: real models loaded once per test session, and real speech to feed them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest

from spoken import Corpus, Speech, voice_for
from voxline.bench.voices import voice_named
from voxline.rtc.hooks import use_host_addresses

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

# Network tests stay on loopback: WebRTC offers ICE candidates on 127.0.0.1 only, in this
# process and in every voxline process a test starts (they read the environment).
os.environ["VOXLINE_RTC_HOST_ADDRESSES"] = "127.0.0.1"
# The voxline processes tests start and stop need no rollout drain on SIGTERM (tests of the
# drain set their own).
os.environ.setdefault("VOXLINE_DRAIN_TIMEOUT_S", "1")
use_host_addresses(["127.0.0.1"])


def missing(what: str) -> NoReturn:
    """A tool the tests need is not installed: a skip on a developer's machine, a failure in CI.

    CI (`.ci/run`, CI=true) installs everything; a test skipped there would pass silently.
    """
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{what} (CI is set: a missing tool fails the run)", pytrace=False)
    pytest.skip(what)


def _stop(thread: Any) -> None:
    """Join a session model's thread before the interpreter exits: exiting while it is inside
    onnxruntime or llama.cpp aborts the run (exit 134, seen after the TTS cancel test)."""
    thread.close()
    thread.join(30)


@pytest.fixture(scope="session")
def stt():
    from voxline.services.stt.whisper import WhisperSTT

    model = WhisperSTT()
    yield model
    _stop(model.thread)


@pytest.fixture(scope="session")
def llm():
    from voxline.services.llm.llamacpp import LlamaCppLLM

    model = LlamaCppLLM()
    yield model
    _stop(model.thread)


@pytest.fixture(scope="session")
def tts():
    from voxline.services.tts.piper import PiperTTS

    model = PiperTTS()
    yield model
    _stop(model.thread)


@pytest.fixture(scope="session")
def vad_model():
    from voxline.services.vad import SileroModel

    return SileroModel()


@pytest.fixture(scope="session")
def corpus(request: pytest.FixtureRequest) -> Corpus:
    """The session's spoken utterances (`tests/spoken.py`), also kept under pytest's cache."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (make test installs it)")
    cache = getattr(request.config, "cache", None)
    return Corpus(cache.mkdir("voxline-speech") if cache is not None else None)


@pytest.fixture
def speech(corpus: Corpus, request: pytest.FixtureRequest) -> Speech:
    """`speech(text)` -> 16 kHz mono s16le of `text` in this test's voice, over a noise floor.

    The voice is fixed by the test's node ID (`@pytest.mark.voice(label)` sets it); a failure's
    report names it.
    """
    marker = request.node.get_closest_marker("voice")
    voice = voice_named(marker.args[0]) if marker is not None else voice_for(request.node.nodeid)
    spoken = Speech(corpus, voice)
    if spoken.needs_piper():
        corpus.use_tts(request.getfixturevalue("tts"))
    request.node.add_report_section("call", "speech", f"this test speaks in the voice {spoken.voice!r}")
    return spoken


def silence(seconds: float, rate: int = 16_000) -> bytes:
    """Digital silence (what no microphone sends: spoken tests use `spoken.floor16k`)."""
    return np.zeros(int(seconds * rate), dtype=np.int16).tobytes()


def write_wav(path: Path, pcm: bytes, rate: int = 16_000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server (Debian's, which `make test` installs) on a free loopback port, no persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server is not installed (make test installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path_factory.mktemp("redis"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.time() < deadline and proc.poll() is None, "redis-server did not start"
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(5)

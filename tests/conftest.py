"""Shared fixtures: real models loaded once per test session, and real speech to feed them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest

from voxline.audio.resample import resample_s16
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


def espeak_pcm16k(text: str) -> bytes:
    """Speech for `text` from Debian's espeak-ng, as 16 kHz mono s16le."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed (make test installs it)")
    wav = subprocess.run([exe, "-s", "150", "--stdout", text], check=True, capture_output=True).stdout
    import io

    with wave.open(io.BytesIO(wav)) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    return resample_s16(pcm, rate, 16_000)


@pytest.fixture(scope="session")
def speech() -> Callable[[str], bytes]:
    """`speech(text)` -> 16 kHz mono s16le PCM of that text spoken (cached)."""
    cache: dict[str, bytes] = {}

    def make(text: str) -> bytes:
        if text not in cache:
            cache[text] = espeak_pcm16k(text)
        return cache[text]

    return make


def silence(seconds: float, rate: int = 16_000) -> bytes:
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

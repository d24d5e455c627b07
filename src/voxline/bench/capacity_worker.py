"""One capacity-mode client process: `python -m voxline.bench.capacity_worker --worker JSON`
runs its share of the concurrent callers and writes their per-session stats to stdout as JSON."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SessionStats:
    """What one concurrent caller saw."""

    connected: bool = False
    error: str | None = None
    turns_asked: int = 0
    turns_answered: int = 0
    turns_failed: int = 0  # ended in an error event (the agent apologised)
    v2v_ms: list[float] = field(default_factory=list)
    frames: int = 0
    first_frame: float | None = None
    last_frame: float | None = None
    gaps_over_100ms: int = 0  # stalls: sound arriving > 100 ms later than its media time (in a reply)
    max_gap_ms: float = 0.0
    frames_skipped: int = 0  # short holes in media time (lost or late frames) inside talk spurts
    rtp_received: int = 0
    rtp_lost: int = 0
    jitter_ms: float | None = None
    server_rtp_lost: int | None = None  # what the server reported losing of ours (RTCP)
    connect_ms: float | None = None  # set-up: offer sent -> media connected (None: it never connected)
    hangup_ms: float | None = None  # tear-down: hang-up asked -> closed (None: it did not close in 10 s)
    hangup_at: float | None = None  # when this caller hung up (the tear-down window starts at the first)
    # Each answered turn's server stage times (`turn.metrics`) and transport, for the stage breakdown.
    turns: list[dict[str, Any]] = field(default_factory=list)


def _turn_record(caller: Any, turn: int, v2v_ms: float) -> dict[str, Any]:
    """One answered turn as `stats.stage_breakdown` reads it: the server's stage times, and transport."""
    metrics = next((e.get("metrics") or {} for e in caller.of_type("turn.metrics")  # the first at or after it
                    if e.get("turn", 0) >= turn), {})
    server_v2v = metrics.get("server_voice_to_voice_ms")
    return {"ok": True, "server": metrics, "v2v_ms": v2v_ms,
            "transport_ms": round(v2v_ms - server_v2v, 1) if isinstance(server_v2v, (int, float)) else None}


def _gap_recorder(stats: SessionStats) -> Any:
    """A Recorder that keeps no audio, only sound times, frame counts and arrival gaps."""
    from voxline.client.audio import Recorder

    class GapRecorder(Recorder):
        last_media: float | None = None
        last_loud: tuple[float, float] | None = None  # (arrival, media time) of the last loud frame

        def frame(self, mono: np.ndarray, media_s: float | None, arrived: float) -> bool:
            stats.frames += 1
            if stats.first_frame is None:
                stats.first_frame = arrived
            if media_s is not None and self.last_media is not None:
                holes = round((media_s - self.last_media) / 0.02) - 1
                if 0 < holes <= 5:
                    stats.frames_skipped += holes  # short holes in media time inside a reply
            stats.last_frame = arrived
            self.last_media = media_s
            if not super().frame(mono, media_s, arrived):
                return False
            # A stall is sound arriving later than its media time says, measured between loud
            # frames of one reply. Silent frames are left out: the server sends nothing between
            # replies, and a jitter buffer releases a reply's last (silent) frames only when the
            # next reply starts, which is inaudible and no stall.
            if media_s is not None and self.last_loud is not None and 0 < media_s - self.last_loud[1] < 1.0:
                stall = (arrived - self.last_loud[0] - (media_s - self.last_loud[1])) * 1000
                stats.max_gap_ms = max(stats.max_gap_ms, stall)
                stats.gaps_over_100ms += stall > 100
            if media_s is not None:
                self.last_loud = (arrived, media_s)
            return True

    return GapRecorder(keep_audio=False)


async def _one_session(server: str, questions: Sequence[np.ndarray], connect_at: float, talk_from: float,
                       end_at: float, gap_s: float, stats: SessionStats, index: int, n: int = 1,
                       spread_s: float = 0.0, at_once_s: float = 0.0) -> None:
    """One caller: question, reply, pause, again. With `spread_s`, callers start spread over
    that time and pause 0.5-1.5 x `gap_s` (seeded), as unrelated callers would; without it they
    go in lockstep (the worst case: every reply at once). With `at_once_s`, every caller asks at
    the same moment, once every `at_once_s` seconds (a caller still waiting skips a round)."""
    from voxline.client.caller import Caller

    rng = random.Random(index)
    first = index / max(1, n) * spread_s if spread_s > 0 else (index % 10) * gap_s / 10
    if at_once_s > 0:
        first = 0.0

    await asyncio.sleep(max(0.0, connect_at - time.time()))
    caller = Caller(server)
    caller.recorder = _gap_recorder(stats)
    try:
        started = time.time()
        await caller.connect(timeout=20)
        stats.connect_ms = round((time.time() - started) * 1000, 1)
        stats.connected = True
        await caller.client.set_listening(True)
        await asyncio.sleep(max(0.0, talk_from - time.time()) + first)
        turn = 0
        while time.time() < end_at - 3:  # each turn needs ~3 s: question, reply
            q = questions[(index + turn) % len(questions)]
            turn += 1
            stats.turns_asked += 1
            said = await caller.say(q)
            done = await caller.wait_reply_done(after=turn, timeout=max(1.0, min(15.0, end_at + 10 - time.time())))
            heard = caller.first_sound_after(said)
            # Answered = a reply text and its sound, and no error in that turn (an apology is
            # sound too: a turn that failed is counted apart, never as answered).
            failed = any(e.get("turn", 0) >= turn for e in caller.of_type("error"))
            replied = any(e.get("final") and e.get("turn", 0) >= turn for e in caller.of_type("agent.text"))
            if done and heard is not None and replied and not failed:
                stats.turns_answered += 1
                stats.v2v_ms.append(round((heard - said) * 1000, 1))
                stats.turns.append(_turn_record(caller, turn, stats.v2v_ms[-1]))
            elif failed:
                stats.turns_failed += 1
            # Later questions are counted by the server's turn numbers: follow them.
            turn = max(turn, max((e.get("turn", 0) for e in caller.of_type("turn.metrics")), default=0))
            if at_once_s > 0:  # the next round of questions all callers ask together
                rounds = int((time.time() - talk_from) // at_once_s) + 1
                await asyncio.sleep(max(0.0, talk_from + rounds * at_once_s - time.time()))
            else:
                await asyncio.sleep(gap_s * rng.uniform(0.5, 1.5) if spread_s > 0 else gap_s)
        await asyncio.sleep(max(0.0, end_at - time.time()))
        report = await caller.client.pc.getStats()
        for s in report.values():
            if s.type == "inbound-rtp":
                stats.rtp_received += s.packetsReceived
                stats.rtp_lost += max(0, s.packetsLost)
                stats.jitter_ms = round(s.jitter / 48, 1)
            elif s.type == "remote-inbound-rtp":
                stats.server_rtp_lost = (stats.server_rtp_lost or 0) + max(0, s.packetsLost)
    except Exception as exc:  # noqa: BLE001 - one caller's failure is a result, not a crash
        stats.error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        stats.hangup_at = time.time()
        try:
            async with asyncio.timeout(10):
                await caller.close()
            stats.hangup_ms = round((time.time() - stats.hangup_at) * 1000, 1)
        except Exception:  # noqa: BLE001 - a hang-up that fails or hangs is counted (hangup_ms None)
            pass


async def worker_main(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run this worker's share of the concurrent callers; returns per-session stats."""
    from voxline.client.audio import read_wav_mono

    questions = [read_wav_mono(p) for p in cfg["questions"]]
    all_stats = [SessionStats() for _ in cfg["indices"]]
    tasks = [asyncio.create_task(_one_session(
        cfg["servers"][i % len(cfg["servers"])], questions, cfg["start_at"] + i * cfg["ramp_interval_s"],
        cfg["talk_from"], cfg["end_at"],
        cfg["gap_s"], st, i, cfg.get("sessions", 1), cfg.get("spread_s", 0.0),
        cfg.get("at_once_s", 0.0))) for i, st in zip(cfg["indices"], all_stats)]
    hard = cfg["end_at"] + 45 - time.time()
    done, pending = await asyncio.wait(tasks, timeout=hard)
    for t in pending:
        t.cancel()
    for st, t in zip(all_stats, tasks):
        if t in pending and st.error is None:
            st.error = "did not finish in time"
    return {"sessions": [st.__dict__ for st in all_stats]}


def _worker_entry(argv: list[str]) -> int:
    from voxline.logs import setup_logging

    setup_logging("WARNING", "text")
    cfg = json.loads(argv[argv.index("--worker") + 1])
    result = asyncio.run(worker_main(cfg))
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker_entry(sys.argv))

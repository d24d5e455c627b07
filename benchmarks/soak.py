"""Soak: many WebRTC callers connecting, toggling listening, hanging up and reconnecting.

Runs an in-process media server and agent on loopback with FIXED-RESPONSE back-ends (no model
work: a fixed transcript, a fixed reply, a tone for speech; real Silero VAD) and N aiortc
callers in a loop, bounded by a cycle count and a time limit. Before, during and after the
load it samples this process's RSS (/proc/self/status), open file descriptors (/proc/self/fd)
and asyncio task count, and checks that they come back to the baseline.

    .venv/bin/python benchmarks/soak.py --callers 20 --minutes 3

The short bounded test is tests/integration/test_soak.py (marker `soak`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LABEL = "FIXED-RESPONSE BACK-ENDS (SOAK ONLY): no model work, never latency or quality figures"


# -- fixed back-ends (soak only) ------------------------------------------------------------
class SoakSTT:
    async def transcribe(self, pcm: bytes, sample_rate: int = 16_000) -> str:
        await asyncio.sleep(0.05)
        return "hello there"

    async def close(self) -> None:
        return None


class SoakLLM:
    async def stream(self, messages: list, max_tokens: int | None = None) -> AsyncIterator[str]:
        for word in ["Hello.", "Nice", "to", "hear", "you."]:
            await asyncio.sleep(0.01)
            yield word + " "

    async def close(self) -> None:
        return None


class SoakTTS:
    sample_rate = 16_000

    def __init__(self) -> None:
        t = np.arange(int(0.4 * self.sample_rate)) / self.sample_rate
        self.pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        await asyncio.sleep(0.01)
        yield self.pcm

    async def close(self) -> None:
        return None


def fixed_models(vad: Any) -> Any:
    from voxline.agent.models import Models
    from voxline.services.threads import ModelThread

    return Models(SoakSTT(), SoakLLM(), SoakTTS(), vad, ModelThread("vad"))  # type: ignore[arg-type]


def tone_48k(seconds: float = 1.0) -> np.ndarray:
    """Voice-like enough for VAD to fire sometimes; the soak does not depend on it."""
    t = np.arange(int(seconds * 48_000)) / 48_000
    wave = np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (wave * 12000).astype(np.int16)


# -- resource figures ---------------------------------------------------------------------------
@dataclass
class Sample:
    label: str
    rss_mb: float
    fds: int
    tasks: int
    threads: int

    def row(self) -> str:
        return f"| {self.label:<14} | {self.rss_mb:8.1f} | {self.fds:5d} | {self.tasks:5d} | {self.threads:7d} |"


def sample(label: str) -> Sample:
    rss_kb = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    import threading

    return Sample(label, rss_kb / 1024, len(os.listdir("/proc/self/fd")), len(asyncio.all_tasks()),
                  threading.active_count())


@dataclass
class SoakResult:
    samples: list[Sample] = field(default_factory=list)
    cycles: int = 0
    sessions: int = 0
    failures: list[str] = field(default_factory=list)
    refused: int = 0  # 503 session_limit while vanished callers still hold slots: the right answer
    refusals: dict[int, int] = field(default_factory=dict)  # every refusal by HTTP status (503, 409, 429 ...)
    seconds: float = 0.0

    def table(self) -> str:
        head = ["| moment         |  RSS MiB |   fds | tasks | threads |",
                "|----------------|---------:|------:|------:|--------:|"]
        return "\n".join(head + [s.row() for s in self.samples])


# -- the load ---------------------------------------------------------------------------------
async def caller_loop(url: str, index: int, stop_at: float, cycles: int, result: SoakResult, rng: random.Random) -> None:
    from voxline.client.caller import Caller
    from voxline.client.whip import WhipError

    for _ in range(cycles):
        if time.monotonic() > stop_at:
            return
        caller = Caller(url)
        try:
            await caller.connect(timeout=15)
            result.sessions += 1
            if rng.random() < 0.5:
                await caller.say(tone_48k(0.6))
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            await caller.client.set_listening(False)
            await asyncio.sleep(rng.uniform(0.05, 0.3))
            await caller.client.set_listening(True)
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            if rng.random() < 0.2:  # a tab closed without DELETE: left to the server's cleanup
                for task in caller._tasks:
                    task.cancel()
                await caller.client.pc.close()
                await caller.client.http.close()
            else:
                await caller.close()  # DELETE
            result.cycles += 1
        except WhipError as exc:
            result.refusals[exc.status] = result.refusals.get(exc.status, 0) + 1
            if exc.status != 503:
                result.failures.append(f"caller {index}: {exc}"[:200])
            result.refused += exc.status == 503
            await caller.close()
            await asyncio.sleep(1.0)
        except Exception as exc:  # noqa: BLE001 - counted and reported, the soak goes on
            result.failures.append(f"caller {index}: {type(exc).__name__}: {exc}"[:200])
            try:
                await caller.close()
            except Exception:  # noqa: BLE001
                pass


async def settle(running: Any, timeout: float) -> None:
    """Wait until every session has ended and the agent forgot them (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = running.media.registry.live_count()
        agent = len(running.orchestrator.sessions) if running.orchestrator else 0
        if live == 0 and agent == 0 and not running.media.peers and not running.media.watchers:
            break
        await asyncio.sleep(0.25)
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0.3)
    try:  # hand freed heap back to the OS, so RSS shows what is still held, not the high-water mark
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


async def soak(callers: int, cycles: int, seconds: float, vad: Any, progress: bool = False) -> tuple[SoakResult, Any]:
    from tests.integration.conftest import start_server, stop_server
    from voxline.config import Settings

    result = SoakResult()
    settings = Settings(max_sessions=callers * 2, max_sessions_per_client=callers * 2,  # one address, many callers
                        session_create_rate_per_min=100_000, session_idle_timeout_s=3.0,
                        model_timeout_s=5,
                        **({"resume_grace_s": 1.0} if "resume_grace_s" in Settings.model_fields else {}))
    running, cleanup = await start_server(settings, fixed_models(vad))
    try:
        # warm-up: one cycle so lazy imports, codecs and pools exist before the baseline
        await caller_loop(running.url, -1, time.monotonic() + 30, 1, SoakResult(), random.Random(0))
        await settle(running, 10)
        result.samples.append(sample("baseline"))
        started = time.monotonic()
        rng = random.Random(42)
        peak = sample("under load")
        # Two rounds of the same load: round 1 brings every pool and cache to its working size,
        # round 2 must then end where round 1 ended (growth between them is a leak).
        for round_ in (1, 2):
            stop_at = time.monotonic() + seconds / 2
            work = [asyncio.create_task(caller_loop(running.url, i, stop_at, cycles, result,
                                                    random.Random(rng.random()))) for i in range(callers)]
            while not all(t.done() for t in work):
                await asyncio.sleep(1.0)
                now = sample("under load")
                peak = now if now.rss_mb > peak.rss_mb else peak
                if progress:
                    print(f"  t={time.monotonic() - started:5.0f}s cycles={result.cycles} live="
                          f"{running.media.registry.live_count()} rss={now.rss_mb:.0f}MiB fds={now.fds} "
                          f"tasks={now.tasks}", flush=True)
            await asyncio.gather(*work, return_exceptions=True)
            if round_ == 1:
                result.samples.append(peak)
            await settle(running, settings.session_idle_timeout_s + 15)
            result.samples.append(sample(f"after round {round_}"))
        result.seconds = time.monotonic() - started
        state = {"live": running.media.registry.live_count(), "peers": len(running.media.peers),
                 "watchers": len(running.media.watchers), "agent_sessions": len(running.orchestrator.sessions),
                 "backlog": len(running.media.backlog), "registry": len(running.media.registry.all())}
    finally:
        await stop_server(cleanup)
    return result, state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--cycles", type=int, default=1000, help="per caller, at most")
    args = parser.parse_args()
    from voxline.services.vad import SileroModel

    print(LABEL)
    result, state = asyncio.run(soak(args.callers, args.cycles, args.minutes * 60, SileroModel(), progress=True))
    print(f"\n{args.callers} callers, {result.seconds:.0f} s: {result.cycles} call cycles, "
          f"{result.sessions} sessions, {len(result.failures)} failures, refused by status: {result.refusals or 'none'}")
    print(result.table())
    print("state after:", state)
    for failure in result.failures[:10]:
        print("  ", failure)
    base, _, first, after = result.samples
    print(f"after vs baseline: RSS {after.rss_mb - base.rss_mb:+.1f} MiB, fds {after.fds - base.fds:+d}, "
          f"tasks {after.tasks - base.tasks:+d}; round 2 vs round 1: RSS {after.rss_mb - first.rss_mb:+.1f} MiB")


if __name__ == "__main__":
    main()

"""A bounded soak (~60 s): 20 callers connect, toggle listening, hang up and reconnect against
the media server and agent on FIXED-RESPONSE back-ends; memory, fds and tasks come back flat.

Marker `soak` (register it in pyproject.toml); the long version is benchmarks/soak.py.
"""

from __future__ import annotations

import logging

import pytest
from benchmarks.soak import fixed_models, soak

__all__ = ["fixed_models"]

CALLERS = 20
SECONDS = 45.0
RSS_GROWTH_MB = 25.0  # round 2 vs round 1 (same load): more than this is a leak
RSS_TOLERANCE_MB = 120.0  # vs the idle baseline: pools, codecs and allocator arenas at working size
FD_TOLERANCE = 8
TASK_TOLERANCE = 3


@pytest.mark.soak
async def test_soak_resources_return_to_baseline(vad_model, caplog: pytest.LogCaptureFixture) -> None:
    # pytest keeps every captured record for its report, and aioice's INFO records hold its
    # connection objects: at INFO the RSS figures counted pytest's memory (~20 MB a round).
    caplog.set_level(logging.WARNING)
    result, state = await soak(CALLERS, cycles=50, seconds=SECONDS, vad=vad_model)
    print(f"\n{CALLERS} callers, {result.seconds:.0f} s: {result.cycles} cycles, {result.sessions} sessions, "
          f"{len(result.failures)} failures, refused by status {result.refusals}\n{result.table()}\n{state}")
    base, peak, first, after = result.samples
    assert result.sessions >= CALLERS * 3, result.failures[:5]
    assert result.refused == result.refusals.get(503, 0)  # every refusal is counted, by status
    assert len(result.failures) <= max(2, result.sessions // 50), result.failures[:10]
    assert state["live"] == state["peers"] == state["watchers"] == state["agent_sessions"] == 0, state
    assert state["backlog"] <= state["registry"], state
    assert after.fds - base.fds <= FD_TOLERANCE, (base, after)
    assert after.tasks - base.tasks <= TASK_TOLERANCE, (base, after)
    assert after.rss_mb - first.rss_mb <= RSS_GROWTH_MB, (base, peak, first, after)
    assert after.rss_mb - base.rss_mb <= RSS_TOLERANCE_MB, (base, peak, first, after)
    assert abs(after.fds - first.fds) <= 2 and abs(after.tasks - first.tasks) <= 2, (first, after)

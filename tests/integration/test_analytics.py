"""Analytics and observability: GET /sessions (filters, paging, aggregates, 400s, auth),
Prometheus /metrics, media log lines on the `logs` topic, OpenTelemetry spans per turn."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from metrics_text import parse_metrics
from tests.integration.test_recovery import call, get_json, own, play_a_turn, wait_for
from voxline.bus.codec import decode_json
from voxline.bus.topics import Topic
from voxline.logs import SessionFilter


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_session_detail_has_duration_turns_and_stage_latencies(media_server, http) -> None:
    url, media = media_server.url, media_server.media
    resp, pc = await call(http, url)
    sid = resp.headers["X-Session-ID"]
    await play_a_turn(media, sid, "Hi.", "Hello!")
    await media.publish_event(sid, "interruption", turn=1)
    await media.publish_event(sid, "error", stage="llm", message="timed out", turn=1)
    await wait_for(lambda: media.registry.get(sid).errors == 1, "the error was not counted")
    state = await get_json(http, f"{url}/sessions/{sid}", own(resp))
    assert state["turns"] == 1 and state["interruptions"] == 1 and state["errors"] == 1
    assert state["duration_s"] >= 0 and state["turn_metrics"][0]["server_voice_to_voice_ms"] == 700.0
    assert "resume_token_hash" not in state and "session_token_hash" not in state
    await pc.close()


@pytest.mark.parametrize("media_server", [{"max_sessions": 6}], indirect=True)
async def test_list_filters_pages_and_aggregates(media_server, http) -> None:
    url, media = media_server.url, media_server.media
    started = time.time()
    sids, pcs, secrets = [], [], []
    for i in range(5):
        resp, pc = await call(http, url, **{"X-Session-ID": f"tmp-{i % 2}"})
        sids.append(resp.headers["X-Session-ID"])
        secrets.append(own(resp))
        pcs.append(pc)
    for i, sid in enumerate(sids[:3]):
        await play_a_turn(media, sid, f"question {i}", f"answer {i}")
    async with http.delete(f"{url}/whip/{sids[0]}", headers=secrets[0]) as resp:
        assert resp.status == 200

    everything = await get_json(http, f"{url}/sessions")
    assert everything["count"] == 5 and everything["next_cursor"] is None
    assert [s["session_id"] for s in everything["sessions"]] == sorted(sids, reverse=True)  # newest first
    agg = everything["aggregates"]
    assert agg["count"] == 5 and agg["turns"] == 3 and agg["by_state"] == {"connected": 4, "ended": 1}
    assert agg["server_voice_to_voice_ms"] == {"p50": 700.0, "p95": 700.0, "n": 3}
    assert agg["stages_ms"]["stt"]["p95"] == 90.0

    ended = await get_json(http, f"{url}/sessions?state=ended")
    assert [s["session_id"] for s in ended["sessions"]] == [sids[0]]
    both = await get_json(http, f"{url}/sessions?state=ended,connected")
    assert both["count"] == 5
    refs = await get_json(http, f"{url}/sessions?client_ref=tmp-1")
    assert {s["session_id"] for s in refs["sessions"]} == {sids[1], sids[3]}
    assert (await get_json(http, f"{url}/sessions?since={started + 3600}"))["count"] == 0

    seen, cursor = [], ""
    while True:
        page = await get_json(http, f"{url}/sessions?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert page["count"] <= 2 and page["aggregates"]["count"] == 5  # aggregates cover all matches
        seen += [s["session_id"] for s in page["sessions"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(sids, reverse=True)
    offset = await get_json(http, f"{url}/sessions?limit=2&offset=4")
    assert [s["session_id"] for s in offset["sessions"]] == [sorted(sids, reverse=True)[4]]
    for pc in pcs:
        await pc.close()


@pytest.mark.parametrize("query", ["state=sleeping", "limit=0", "limit=abc", "limit=100000", "since=nan",
                                   "since=-1", "offset=-3", "cursor=nope", "colour=blue",
                                   f"cursor=session_1700000000000_{'a' * 16}&offset=2", "client_ref=" + "x" * 65])
async def test_bad_list_queries_are_400_json(media_server, http, query: str) -> None:
    async with http.get(f"{media_server.url}/sessions?{query}") as resp:
        assert resp.status == 400, await resp.text()
        body = await resp.json()
        assert body["error"] == "bad_query" and body["detail"]


@pytest.mark.parametrize("media_server", [{"auth_token": "s3cret"}], indirect=True)
async def test_session_listing_needs_the_bearer_token(media_server, http) -> None:
    async with http.get(f"{media_server.url}/sessions") as resp:
        assert resp.status == 401
    async with http.get(f"{media_server.url}/sessions", headers={"Authorization": "Bearer s3cret"}) as resp:
        assert resp.status == 200 and (await resp.json())["count"] == 0


async def test_prometheus_metrics_follow_sessions_and_turns(media_server, http) -> None:
    url, media = media_server.url, media_server.media
    resp, pc = await call(http, url)
    sid = resp.headers["X-Session-ID"]
    await play_a_turn(media, sid, "Hi.", "Hello!")
    await media.publish_event(sid, "interruption", turn=1)
    await media.publish_event(sid, "error", stage="tts", message="x", turn=1)
    await wait_for(lambda: media.metrics.registry.get_sample_value("voxline_errors_total", {"stage": "tts"}) == 1,
                   "error not counted")
    async with http.get(f"{url}/metrics") as r:
        assert r.status == 200 and r.content_type == "text/plain"
        m = parse_metrics(await r.text())
    assert m["voxline_sessions_active"] == 1 and m["voxline_sessions_created_total"] == 1
    assert m["voxline_turns_total"] == 1 and m["voxline_interruptions_total"] == 1
    assert m['voxline_errors_total{stage="tts"}'] == 1
    assert m['voxline_stage_latency_seconds_count{stage="stt"}'] == 1
    assert m['voxline_stage_latency_seconds_bucket{le="0.75",stage="server_voice_to_voice"}'] == 1
    assert m['voxline_stage_latency_seconds_bucket{le="0.5",stage="server_voice_to_voice"}'] == 0
    assert m["voxline_bus_lag_seconds_count"] >= 5
    assert m["voxline_inbound_audio_dropped_total"] == 0
    peer = media.peers[sid]
    peer.playout.frames_late += 3  # as if the loop had lagged
    peer.dropped_in += 2
    assert peer.direct is not None  # Opus was negotiated: the direct path took the caller's audio
    peer.direct.concealed += 1
    async with http.delete(f"{url}/whip/{sid}", headers=own(resp)) as r:
        assert r.status == 200
    m = parse_metrics(await (await http.get(f"{url}/metrics")).text())
    assert m["voxline_sessions_active"] == 0
    # Counters keep what closed calls counted (they never go down).
    assert m["voxline_playout_frames_late_total"] >= 3 and m["voxline_inbound_audio_dropped_total"] == 2
    assert m["voxline_inbound_rtp_concealed_total"] >= 1 and m["voxline_inbound_rtp_errors_total"] == 0
    assert m['voxline_sessions_ended_total{reason="ended by the client (DELETE)"}'] == 1
    await pc.close()


async def test_media_log_lines_reach_the_logs_topic_and_carry_the_session_id(media_server, http, caplog) -> None:
    url, media = media_server.url, media_server.media
    sub = await media.bus.subscribe([Topic.LOGS])
    got: list[dict[str, Any]] = []

    async def collect() -> None:
        async for message in sub:
            got.append(decode_json(message.value))

    task = asyncio.create_task(collect())
    session_filter = SessionFilter()
    caplog.handler.addFilter(session_filter)
    with caplog.at_level(logging.INFO, logger="voxline.media"):
        resp, pc = await call(http, url)
        sid = resp.headers["X-Session-ID"]
        await http.post(f"{url}/listening/stop", json={"session_id": sid}, headers=own(resp))
        await wait_for(lambda: len(got) >= 2, "no media log lines on the logs topic")
        await pc.close()
        await wait_for(lambda: media.registry.get(sid).state.value == "disconnected", "drop not noticed")
    caplog.handler.removeFilter(session_filter)
    assert {e["stage"] for e in got} >= {"whip", "session"} and all(e["session_id"] == sid for e in got)
    session_lines = [r for r in caplog.records if r.name.startswith("voxline.media") and "session" in r.getMessage()]
    assert session_lines and all(getattr(r, "session_id", None) == sid for r in session_lines)
    task.cancel()
    await sub.close()


async def test_opentelemetry_span_per_turn_with_stage_children(media_server, http) -> None:
    # opentelemetry-sdk is in the test extra: missing, it is an error, never a skip
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from voxline.media.metrics import TurnTracer

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    media = media_server.media
    media.tracer = TurnTracer.from_settings(True, provider)
    resp, pc = await call(http, media_server.url)
    sid = resp.headers["X-Session-ID"]
    await media.publish_event(sid, "turn.metrics", turn=1, metrics={
        "end_of_turn_ms": 500.0, "stt_ms": 100.0, "llm_first_token_ms": 150.0, "first_sentence_ms": 300.0,
        "tts_first_audio_ms": 120.0, "server_voice_to_voice_ms": 900.0, "speculative": False})
    await wait_for(lambda: len(exporter.get_finished_spans()) == 5, "spans were not recorded")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    turn = spans["turn"]
    assert turn.attributes["voxline.session_id"] == sid and turn.attributes["voxline.turn"] == 1
    assert abs((turn.end_time - turn.start_time) / 1e6 - 900.0) < 1
    for stage in ("end_of_turn", "stt", "llm_first_token", "tts_first_audio"):
        assert spans[stage].parent.span_id == turn.context.span_id
        assert turn.start_time <= spans[stage].start_time <= spans[stage].end_time <= turn.end_time
    assert abs((spans["stt"].end_time - spans["stt"].start_time) / 1e6 - 100.0) < 1
    await pc.close()

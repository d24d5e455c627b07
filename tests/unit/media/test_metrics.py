"""The media server's /metrics text: prometheus-client, one registry per server."""

from __future__ import annotations

from metrics_text import parse_metrics
from voxline.bus.messages import TurnMetrics
from voxline.media.metrics import MediaMetrics


def test_two_servers_in_one_process_count_apart_and_each_reports_its_process() -> None:
    a, b = MediaMetrics(), MediaMetrics()
    a.created.inc()
    a.session_ended("ended by the client (DELETE)")
    a.on_event(TurnMetrics(session_id="s", turn=1, metrics={"stt_ms": 120, "server_voice_to_voice_ms": 640,
                                                            "speculative": True}))
    got_a = parse_metrics(a.render(2, 1, {"frames_late": 3}, {("receive", "direct"): 2}).decode())
    got_b = parse_metrics(b.render(0, 0).decode())
    assert got_a["voxline_sessions_created_total"] == 1 and got_b["voxline_sessions_created_total"] == 0
    assert got_a['voxline_sessions_ended_total{reason="ended by the client (DELETE)"}'] == 1
    assert got_a["voxline_turns_total"] == 1 and got_b["voxline_turns_total"] == 0
    assert got_a['voxline_stage_latency_seconds_bucket{le="0.75",stage="server_voice_to_voice"}'] == 1
    assert got_a['voxline_stage_latency_seconds_bucket{le="0.5",stage="server_voice_to_voice"}'] == 0
    assert got_a['voxline_stage_latency_seconds_count{stage="stt"}'] == 1
    assert not any("speculative" in key for key in got_a)  # only numeric *_ms fields are stages
    assert got_a["voxline_sessions_active"] == 2 and got_a["voxline_sessions_disconnected"] == 1
    assert got_a["voxline_playout_frames_late_total"] == 3 and got_b["voxline_playout_frames_late_total"] == 0
    assert got_a['voxline_peer_paths{direction="receive",path="direct"}'] == 2
    assert got_a['voxline_peer_paths{direction="send",path="aiortc"}'] == 0
    assert got_a["process_resident_memory_bytes"] > 0 and "process_cpu_seconds_total" in got_b
    assert not any(key.endswith("_created") for key in got_a)  # no _created series


def test_a_label_taken_from_a_message_is_bounded() -> None:
    metrics = MediaMetrics()
    metrics.session_ended("x" * 500 + "\nsecond line")
    (key,) = [k for k in parse_metrics(metrics.render(0, 0).decode()) if k.startswith("voxline_sessions_ended_total")]
    assert key == 'voxline_sessions_ended_total{reason="' + "x" * 80 + '"}'

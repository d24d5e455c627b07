"""The benchmark's statistics and report helpers: percentiles, tables, JSON shape (no timing, no models)."""

from __future__ import annotations

import json

import pytest

from voxline.bench.capacity import capacity_summary, cpu_pct
from voxline.bench.capacity_worker import SessionStats
from voxline.bench.latency import latency_report
from voxline.bench.stats import (
    CAPACITY_HEADER,
    STAGES,
    capacity_row,
    format_table,
    latency_report_text,
    percentile,
    summarize,
)


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile([10, 20], 50) == 15
    assert percentile([4, 1, 3, 2], 0) == 1
    assert percentile([4, 1, 3, 2], 100) == 4
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05, abs=0.1)


def test_percentile_of_nothing_is_none_and_bad_q_raises() -> None:
    assert percentile([], 50) is None
    assert percentile([7], 95) == 7
    with pytest.raises(ValueError):
        percentile([1, 2], 101)


def test_summarize_ignores_missing_values() -> None:
    s = summarize([300.0, None, 100.0, 200.0])
    assert s == {"p50": 200.0, "p95": 290.0, "min": 100.0, "max": 300.0, "n": 3}
    assert summarize([]) == {"p50": None, "p95": None, "min": None, "max": None, "n": 0}


def _turn(v2v: float | None, server_v2v: float | None, ok: bool = True) -> dict:
    return {"question": "q", "repeat": 0, "ok": ok, "error": None if ok else "no reply", "voice_to_voice_ms": v2v,
            "transport_ms": None if v2v is None or server_v2v is None else v2v - server_v2v,
            "server": {"end_of_turn_ms": 500.0, "stt_ms": 100.0, "llm_first_token_ms": 50.0,
                       "first_sentence_ms": 200.0, "tts_first_audio_ms": 80.0,
                       "server_voice_to_voice_ms": server_v2v}}


def test_latency_report_json_shape_counts_failures() -> None:
    turns = [_turn(1000.0, 900.0), _turn(1200.0, 1000.0), _turn(None, None, ok=False)]
    report = latency_report(turns, {"cores": 2, "date": "today"}, {"server": "x"})
    assert set(report) >= {"voice_to_voice_ms", "stages_ms", "turns", "machine", "settings"}
    assert set(report["voice_to_voice_ms"]) == {"p50", "p95", "min", "max", "n"}
    assert report["voice_to_voice_ms"]["n"] == 2
    assert report["failed"] == 1
    assert len(report["turns"]) == 3  # failed calls are kept, never dropped
    assert set(report["stages_ms"]) == {label for label, _ in STAGES}
    assert report["stages_ms"]["transport"]["p50"] == 150.0
    assert report["stages_ms"]["stt"] == {"p50": 100.0, "p95": 100.0, "n": 2}
    json.dumps(report)  # serialisable as is


def test_latency_text_has_table_and_failures() -> None:
    turns = [_turn(1000.0, 900.0), _turn(None, None, ok=False)]
    text = latency_report_text(latency_report(turns, {"cores": 2}, {"server": "x"}))
    assert "| p50 ms" in text and "| transport" in text
    assert "failed calls (1)" in text


def test_format_table_aligns_columns_and_marks_missing() -> None:
    table = format_table([["stt", 123.4, None], ["transport", 5.0, 7]], ["stage", "p50", "n"])
    lines = table.splitlines()
    assert len(lines) == 4
    assert len({len(line) for line in lines}) == 1  # every row as wide as the header
    assert "| -" in lines[2] and "123" in lines[2]


def test_cpu_pct_from_samples() -> None:
    rows = [{"t": 0.0, "server": (1.0, 100.0)}, {"t": 2.0, "server": (2.0, 110.0)}]
    assert cpu_pct(rows, "server") == 50.0
    assert cpu_pct(rows[:1], "server") is None


def test_capacity_summary_shape() -> None:
    sess = SessionStats(connected=True, turns_asked=2, turns_answered=2, v2v_ms=[900.0, 1000.0],
                              frames=500, first_frame=0.0, last_frame=9.98).__dict__
    idle = [{"t": 0.0, "server": (1.0, 100.0), "clients": [], "system": (0.0, 0.0)},
            {"t": 1.0, "server": (1.0, 100.0), "clients": [], "system": (0.0, 2.0)}]
    loaded = [{"t": 10.0, "server": (1.0, 120.0), "clients": [(0.0, 50.0)], "frames_late": 3.0, "active": 1.0, "inbound_limited": 7.0,
               "system": (0.0, 0.0), "conductor": (0.0, 1.0)},
              {"t": 20.0, "server": (3.0, 130.0), "clients": [(1.0, 50.0)], "frames_late": 5.0, "active": 1.0,
               "system": (10.0, 10.0), "conductor": (0.0, 1.0)}]
    out = capacity_summary(1, [sess], idle, loaded, 1)
    assert out["server"]["cpu_pct"] == 20.0 and out["server"]["frames_late"] == 2
    assert out["server"]["inbound_limited_max"] == 7  # the input bounds' drops are reported, not hidden
    assert out["server"]["rss_mb_per_session"] == 30.0
    assert out["clients"]["frames_expected"] == 500 and out["clients"]["frames_missing"] == 0
    assert out["clients"]["v2v_ms"]["n"] == 2
    row = capacity_row({"sessions": 1, **out})
    assert len(row) == len(CAPACITY_HEADER)


def test_capacity_report_breaks_the_answered_turns_down_by_stage() -> None:
    """Which stage the callers queue on (the server's turn.metrics of each answered turn)."""
    from types import SimpleNamespace

    from voxline.bench.capacity import report_text
    from voxline.bench.capacity_worker import _turn_record

    events = [{"type": "turn.metrics", "turn": 1, "metrics": {"stt_ms": 300.0, "server_voice_to_voice_ms": 900.0}},
              {"type": "turn.metrics", "turn": 2, "metrics": {"stt_ms": 500.0, "server_voice_to_voice_ms": 1000.0}}]
    caller = SimpleNamespace(of_type=lambda t: [e for e in events if e["type"] == t])
    turns = [_turn_record(caller, 1, 950.0), _turn_record(caller, 2, 1100.0)]
    assert [t["transport_ms"] for t in turns] == [50.0, 100.0]
    sess = SessionStats(connected=True, turns_asked=2, turns_answered=2, v2v_ms=[950.0, 1100.0], turns=turns).__dict__
    rows = [{"t": float(t), "server": (1.0, 100.0), "clients": [], "system": (0.0, 0.0), "frames_late": 0.0, "conductor": None,
             "active": 1.0} for t in (0, 1)]
    out = capacity_summary(1, [sess], rows, rows, 0)
    assert out["clients"]["stages_ms"]["stt"] == {"p50": 400.0, "p95": 490.0, "n": 2}
    report = {"sessions": 1, **out, "machine": {}, "settings": {}, "lifecycle": None}
    assert "| stt " in report_text(report)


# -- the benchmark cannot flatter ----------------------------------------------------------------
def test_a_misheard_question_or_a_wrong_answer_is_a_failed_turn() -> None:
    from voxline.bench.latency import QUESTIONS, check_turn

    q = "What is the capital of Italy?"
    assert check_turn(q, "What is the capital of Italy?", "The capital of Italy is Rome.") is None
    assert (check_turn(q, "What is the capital of Italy?", "It is Paris.") or "").startswith("wrong answer")
    assert (check_turn(q, "What is the capital of a tree?", "Rome.") or "").startswith("misheard")
    # the benchmark's questions are not the tests' sentences
    assert not {"What is the capital of France?", "What color is the sky?"} & set(QUESTIONS)


def test_the_headline_is_the_median_of_the_runs_with_their_spread() -> None:
    from voxline.bench.stats import runs_summary

    turns = [{"repeat": r, "ok": True, "voice_to_voice_ms": v}
             for r, vals in enumerate([[500, 520], [900, 950], [600, 640]]) for v in vals]
    turns.append({"repeat": 1, "ok": False, "voice_to_voice_ms": 100})  # a failure never counts
    runs = runs_summary(turns)
    assert runs["p50"] == 620.0  # the median run, not the best (510)
    assert runs["p50_spread"] == [510.0, 925.0]
    assert [r["failed"] for r in runs["per_run"]] == [0, 1, 0]


def test_the_jitter_buffer_delays_the_first_sound_by_what_the_spurt_needs() -> None:
    import numpy as np

    from voxline.client.audio import JITTER_BUFFER_MIN_S, RATE, Recorder

    loud = np.full(960, 5000, dtype=np.int16)
    steady, jittery = Recorder(), Recorder()
    for i in range(20):
        steady.frame(loud, i * 0.02, 100.0 + i * 0.02)
        jittery.frame(loud, i * 0.02, 100.0 + i * 0.02 + (0.09 if i == 5 else 0.0))  # one frame 90 ms late
    assert steady.first_sound_after(99) == 100.0
    assert steady.played_first_sound_after(99) == pytest.approx(100.0 + JITTER_BUFFER_MIN_S)
    assert jittery.played_first_sound_after(99) == pytest.approx(100.09)
    assert steady.played_first_sound_after(200) is None
    assert RATE == 48_000


def test_capacity_does_not_count_a_turn_that_ended_in_an_error_as_answered() -> None:
    import asyncio

    from voxline.bench import capacity_worker

    class FakeCaller:
        """Answers every question aloud; turn 2's answer is an apology after an error."""

        def __init__(self, server: str) -> None:
            self.events: list[dict] = []
            self.client = type("C", (), {"set_listening": staticmethod(lambda on: asyncio.sleep(0)),
                                         "pc": type("P", (), {"getStats": staticmethod(lambda: asyncio.sleep(0, {}))})()})()
            self.recorder = None
            self.turn = 0

        async def connect(self, timeout: float) -> None:
            return None

        async def say(self, q) -> float:  # type: ignore[no-untyped-def]
            import time

            self.turn += 1
            self.events.append({"type": "error" if self.turn == 2 else "agent.text", "final": True, "turn": self.turn})
            return time.time()

        async def wait_reply_done(self, after: int, timeout: float) -> bool:
            return True

        def first_sound_after(self, t: float) -> float:
            return t + 0.5

        def of_type(self, kind: str) -> list[dict]:
            return [e for e in self.events if e["type"] == kind]

        async def close(self) -> None:
            return None

    import time
    from unittest import mock

    stats = SessionStats()
    with mock.patch("voxline.client.caller.Caller", FakeCaller):
        now = time.time()
        asyncio.run(capacity_worker._one_session("http://x", [None], now, now, now + 3.3, 0.0, stats, 0))  # type: ignore[list-item]
    assert stats.turns_asked >= 3 and stats.turns_failed == 1
    assert stats.turns_answered == stats.turns_asked - 1


def test_the_sampler_reads_the_media_servers_metrics_text() -> None:
    """prometheus-client writes `7.0`, histograms and labelled series: the bench reads what it needs."""
    from voxline.bench.system import _metric
    from voxline.media.metrics import MediaMetrics

    text = MediaMetrics().render(3, 1, {"frames_late": 7}, {("receive", "direct"): 3}).decode()
    assert _metric(text, "voxline_playout_frames_late_total") == 7
    assert _metric(text, "voxline_sessions_active") == 3
    assert _metric(text, "voxline_peer_paths") is None  # labelled only: no unlabelled sample
    assert _metric(text, "voxline_no_such_metric") is None

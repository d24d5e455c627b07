"""`voxline bench --backends`: the remote configuration's processes and flags, the turns asked
of each configuration in turn, and the side-by-side table (no models, no timing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voxline.bench import latency
from voxline.bench.backends import remote_flags, run_server, service_processes
from voxline.bench.latency import latency_report
from voxline.bench.stats import comparison_report_text
from voxline.cli import build_parser


def test_the_services_not_given_are_started_and_the_run_points_at_all_three(tmp_path: Path) -> None:
    urls, procs = service_processes(tmp_path, {"stt": None, "llm": "http://10.0.0.9:8012/", "tts": None})
    assert urls["llm"] == "http://10.0.0.9:8012"
    assert [p.cmd[3:5] for p in procs] == [["serve", "stt"], ["serve", "tts"]]
    assert all(p.ready_path == "/readyz" for p in procs)  # warmed, not only listening
    assert [p.url for p in procs] == [urls["stt"], urls["tts"]]
    flags = remote_flags(urls)
    server = run_server(tmp_path, "remote", flags)
    args = build_parser().parse_args(["run", *flags])  # flags `voxline run` accepts
    assert (args.stt, args.llm, args.tts) == ("openai", "openai", "openai")
    assert args.llm_url == "http://10.0.0.9:8012"
    assert server.cmd[3] == "run" and server.cmd[-len(flags):] == flags


@pytest.mark.asyncio
async def test_each_question_goes_to_every_configuration_in_alternating_order(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, str]] = []

    async def fake_turn(server: str, text: str, samples: Any, rep: int, timeout: float) -> dict[str, Any]:
        asked.append((server, text))
        return {"question": text, "repeat": rep, "ok": True, "error": None, "voice_to_voice_ms": 1.0}

    monkeypatch.setattr(latency, "measure_turn", fake_turn)
    questions = [("a?", np.zeros(1)), ("b?", np.zeros(1))]
    turns = await latency.run_latency({"embedded": "E", "remote": "R"}, questions, 2, 1.0, pause_s=0)
    assert asked == [("E", "a?"), ("R", "a?"), ("E", "b?"), ("R", "b?"),
                     ("R", "a?"), ("E", "a?"), ("R", "b?"), ("E", "b?")]
    assert [t["backends"] for t in turns[:2]] == ["embedded", "remote"]


def _turn(v2v: float, stt: float) -> dict[str, Any]:
    return {"question": "q", "repeat": 0, "ok": True, "error": None, "voice_to_voice_ms": v2v,
            "voice_to_voice_unbuffered_ms": v2v - 40, "transport_ms": 100.0,
            "server": {"stt_ms": stt, "server_voice_to_voice_ms": v2v - 100}}


def test_the_side_by_side_table_has_both_and_their_ratio() -> None:
    machine = {"cores": 2}
    configs = {"embedded": latency_report([_turn(500, 100), _turn(600, 100)], machine, {"server": "e"}),
               "remote": latency_report([_turn(550, 150), _turn(660, 150)], machine, {"server": "r"})}
    text = comparison_report_text({"configs": configs, "machine": machine, "settings": {}})
    assert "== embedded ==" in text and "== remote ==" in text
    table = text.split("side by side", 1)[1]
    assert "| embedded ms | remote ms | remote / embedded |" in table.replace("  ", " ").replace("  ", " ")
    p50 = next(line for line in table.splitlines() if "voice-to-voice p50 (jitter buffer)" in line)
    assert "550" in p50 and "605" in p50 and "1.10" in p50
    stt = next(line for line in table.splitlines() if line.startswith("| stt p50"))
    assert "1.50" in stt

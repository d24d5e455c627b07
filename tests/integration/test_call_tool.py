"""`voxline call` plays every question of its file and reports each turn (real server, real models)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from audio_helpers import words
from sentences import SPRING, WEATHER
from spoken import floor16k
from tests.conftest import write_wav
from voxline.audio.resample import resample_s16
from voxline.client.call import call_main

pytestmark = pytest.mark.models


async def test_a_two_question_file_reports_two_turns(voice_server, speech, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    audio = floor16k(0.3, 1) + speech(WEATHER.text) + floor16k(2.0, 2) + speech(SPRING.text) + floor16k(0.3, 3)
    path = write_wav(tmp_path / "two.wav", resample_s16(audio, 16_000, 44_100), rate=44_100)
    args = argparse.Namespace(wav=str(path), server=voice_server.url, token=None, timeout=60.0, out=None,
                              json=True, split_silence=1.0)
    code = await call_main(args)
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    turns = report["turns"]
    assert len(turns) == 2, turns
    assert WEATHER.heard <= words(turns[0]["transcript"]), turns[0]
    assert SPRING.heard <= words(turns[1]["transcript"]), turns[1]
    assert all(t["reply_text"] for t in turns), turns
    # Each question was answered after it ended, the second after the first reply was heard out.
    assert all(t["voice_to_voice_ms"] is not None and t["voice_to_voice_ms"] > 0 for t in turns), turns
    assert turns[0]["turn"] < turns[1]["turn"]
    assert np.isfinite(report["reply_audio_s"]) and report["reply_audio_s"] > 1.0

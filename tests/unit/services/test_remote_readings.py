"""The STT's other readings over HTTP: `voxline serve stt` sends them, the agent's `OpenAISTT` keeps
them (a fake STT at the model boundary, real loopback HTTP), so a remote STT gives the end of the
turn the same evidence on a doubted last word as the embedded one."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from voxline.config import Settings
from voxline.modelserver.app import create_service_app
from voxline.services.base import Heard, readings_of
from voxline.services.stt.openai import OpenAISTT, _readings

INVENTED = Heard("I would like to book a table for it.", (("I would like to book a table for", 0.01),))


class ScriptedSTT:
    name = "fake-stt"
    language = "en"

    def __init__(self, text: str) -> None:
        self.text = text

    async def transcribe(self, pcm: bytes, sample_rate: int = 16_000) -> str:
        return self.text

    async def close(self) -> None:
        return None


async def heard_over_http(backend: Any) -> str:
    runner = web.AppRunner(create_service_app("stt", backend, Settings()), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    stt = OpenAISTT(f"http://127.0.0.1:{runner.addresses[0][1]}", retries=0)
    try:
        return await stt.transcribe(b"\x01\x00" * 16_000)
    finally:
        await stt.close()
        await runner.cleanup()


async def test_the_readings_travel_with_the_transcript() -> None:
    heard = await heard_over_http(ScriptedSTT(INVENTED))
    assert heard == str(INVENTED) and readings_of(heard) == INVENTED.readings


async def test_a_transcript_without_readings_stays_a_plain_one() -> None:
    heard = await heard_over_http(ScriptedSTT("What time is it?"))
    assert heard == "What time is it?" and readings_of(heard) == ()


def test_malformed_readings_are_dropped_and_bounded() -> None:
    assert _readings(None) == () and _readings("a") == ()
    assert _readings([["ok", 0.1], ["no", "0.1"], [3, 0.1], ["nan", float("nan")], ["b", True], ["x"]]) == (("ok", 0.1),)
    assert len(_readings([["r", 0.1]] * 50)) == 8

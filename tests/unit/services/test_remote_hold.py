"""The remote LLM's "first audio first" hold, over real loopback HTTP: the agent's `OpenAILLM.gate`
against `voxline serve llm`'s app (a fake LLM at the model boundary, recording what its scheduler
is told), and against a vendor that has no such endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any

from aiohttp import web

from audio_helpers import until as poll
from tool_servers import ScriptedLLM
from voxline.config import Settings
from voxline.modelserver import llm as server_llm
from voxline.modelserver.app import create_service_app
from voxline.services import factory
from voxline.services.base import ChatMessage
from voxline.services.llm.openai import OpenAILLM

ASK: list[ChatMessage] = [{"role": "user", "content": "What is the capital of Italy?"}]


class HoldingLLM:
    """The model boundary of `voxline serve llm`: a reply, and what its scheduler was told."""

    name = "fake-llm"
    max_tokens = 16

    def __init__(self) -> None:
        self.events: list[tuple[str, Hashable]] = []

    def hold(self, holder: Hashable) -> None:
        self.events.append(("hold", holder))

    def release(self, holder: Hashable) -> None:
        self.events.append(("release", holder))

    async def stream(self, messages: list[ChatMessage], max_tokens: int | None = None) -> AsyncIterator[str]:
        for word in ("Rome ", "is ", "the ", "capital."):
            yield word


async def served(backend: Any) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_service_app("llm", backend, Settings()), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    assert await poll(cond, timeout_s)


async def test_the_first_audio_hold_reaches_the_servers_scheduler_and_its_release_ends_it() -> None:
    backend = HoldingLLM()
    runner, url = await served(backend)
    llm = OpenAILLM(url, hold=True)
    try:
        assert llm.gate is not None

        async def turn() -> str:  # as the pipeline does: clear per piece until the first audio, set after each
            reply = "".join([d async for d in llm.stream(ASK)])
            assert llm.gate is not None
            llm.gate.clear()
            llm.gate.clear()  # the next piece, still before the first audio: already held
            await until(lambda: len(backend.events) == 1)
            llm.gate.set()
            llm.gate.set()  # after each later piece: nothing left to release
            return reply

        assert await asyncio.create_task(turn()) == "Rome is the capital."
        await until(lambda: len(backend.events) == 2 and llm.gate is not None and llm.gate.sent == 2)
        (on, holder), (off, same) = backend.events
        assert (on, off) == ("hold", "release") and holder == same
        await asyncio.sleep(0.05)
        assert len(backend.events) == 2  # one hold and one release a turn, not one per call

        llm.gate.clear()  # another task (the next turn) holds in its own name
        await until(lambda: len(backend.events) == 3)
        assert backend.events[2] != ("hold", holder)
    finally:
        await llm.close()
        await runner.cleanup()


async def test_a_hold_whose_release_never_came_lapses_at_the_next_hold(monkeypatch: Any) -> None:
    monkeypatch.setattr(server_llm, "HOLD_LAPSE_S", 0.0)  # every hold has lapsed by the next request
    backend = HoldingLLM()
    runner, url = await served(backend)
    llm = OpenAILLM(url, hold=True)
    try:
        assert llm.gate is not None

        async def hold_only() -> None:  # an agent that died before its release
            assert llm.gate is not None
            llm.gate.clear()

        await asyncio.create_task(hold_only())
        await until(lambda: len(backend.events) == 1)
        await asyncio.create_task(hold_only())
        await until(lambda: len(backend.events) == 3)
        first = backend.events[0][1]
        assert ("release", first) in backend.events  # the server forgot the lapsed one
    finally:
        await llm.close()
        await runner.cleanup()


async def test_a_vendor_without_the_hold_endpoint_is_asked_once_and_the_turn_goes_on() -> None:
    server = await ScriptedLLM([["Rome."], ["Paris."]]).start()
    llm = OpenAILLM(server.url, hold=True)
    try:
        assert llm.gate is not None
        llm.gate.clear()  # answered 404 by the vendor
        await until(lambda: llm.gate is not None and not llm.gate.supported)
        llm.gate.set()
        assert "".join([d async for d in llm.stream(ASK)]) == "Rome."

        async def later_turn() -> str:
            assert llm.gate is not None
            llm.gate.clear()
            llm.gate.set()
            return "".join([d async for d in llm.stream(ASK)])

        assert await asyncio.create_task(later_turn()) == "Paris."
        assert len(server.requests) == 2 and llm.gate.asked == 1  # the hold was not asked for again
    finally:
        await llm.close()
        await server.close()


def test_the_hold_is_asked_for_by_default_only_where_the_llm_shares_this_machine() -> None:
    def gate(**kw: Any) -> object:
        return getattr(factory.build_llm(Settings(llm="openai", **kw)), "gate", None)

    assert gate(llm_url="http://127.0.0.1:8012") is not None
    assert gate(llm_url="http://localhost:8012/v1") is not None
    assert gate(llm_url="http://llm.internal:8012") is None  # another machine: nothing to hold for
    assert gate(llm_url="http://10.0.0.7:8012", llm_hold="on") is not None
    assert gate(llm_url="http://127.0.0.1:8012", llm_hold="off") is None


class SentencesLLM(HoldingLLM):
    """A reply of several TTS pieces, a token at a time."""

    REPLY = "Two plus two is four. It is one of the first sums children learn. Ask me another."

    async def stream(self, messages: list[ChatMessage], max_tokens: int | None = None) -> AsyncIterator[str]:
        for token in self.REPLY.split():
            yield token + " "
            await asyncio.sleep(0)


class SpokenTTS:
    name = "fake-tts"
    sample_rate = 16_000

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        self.asked.append(text)
        await asyncio.sleep(0.01)
        yield b"\x10\x27" * 160 * len(text.split())


async def test_a_remote_reply_of_several_pieces_holds_the_server_once_and_releases_it() -> None:
    from types import SimpleNamespace

    from voxline.agent.pipeline import ReplyPipeline, ReplyText

    backend, tts = SentencesLLM(), SpokenTTS()
    runner, url = await served(backend)
    llm = OpenAILLM(url, hold=True)
    try:
        models = SimpleNamespace(stt=None, llm=llm, tts=tts, first_piece_words=4)
        pipeline = ReplyPipeline(models, b"", [], timeout_s=5.0, text="What is two plus two?")  # type: ignore[arg-type]
        pipeline.start()
        outputs = [item async for item in pipeline.outputs()]
        assert any(isinstance(o, ReplyText) for o in outputs) and len(tts.asked) >= 3
        await until(lambda: len(backend.events) >= 2)
        await asyncio.sleep(0.05)
        kinds = [kind for kind, _ in backend.events]
        assert kinds == ["hold", "release"], backend.events  # for the first piece only
        assert backend.events[0][1] == backend.events[1][1]
    finally:
        await llm.close()
        await runner.cleanup()

"""The remote LLM path's connection behaviour, against a scripted OpenAI-compatible server:
a finished stream leaves its connection for the next turn (no per-request TCP setup), and a
stream dropped half-way (a speculative reply the caller spoke over) closes it, which is what
tells the server to stop generating."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp import web

from audio_helpers import until
from tool_servers import ScriptedLLM
from voxline.config import Settings
from voxline.modelserver.app import create_service_app
from voxline.services.base import ChatMessage
from voxline.services.llm.openai import OpenAILLM

ASK: list[ChatMessage] = [{"role": "user", "content": "What is the capital of Italy?"}]


async def test_turns_reuse_one_connection_and_a_dropped_stream_closes_its_own() -> None:
    server = await ScriptedLLM([["The capital ", "is Rome."], ["Rome."], ["One ", "two ", "three ", "four."],
                                ["Again."]], done_tail_s=0.05).start()
    llm = OpenAILLM(server.url)
    try:
        assert "".join([d async for d in llm.stream(ASK)]) == "The capital is Rome."
        assert "".join([d async for d in llm.stream(ASK)]) == "Rome."
        assert server.peers[0] == server.peers[1]  # kept alive: the second turn paid no connect

        stream = llm.stream(ASK)
        assert await stream.__anext__() == "One "
        await stream.aclose()  # dropped after its first delta
        assert server.peers[2] == server.peers[0]
        assert "".join([d async for d in llm.stream(ASK)]) == "Again."
        assert server.peers[3] != server.peers[2]  # the dropped one's connection was not reused
    finally:
        await llm.close()
        await server.close()


async def test_warming_sends_the_system_prompt_once_so_the_server_caches_it() -> None:
    server = await ScriptedLLM([["Hello."]]).start()
    llm = OpenAILLM(server.url)
    try:
        system: ChatMessage = {"role": "system", "content": "You are a helpful voice assistant."}
        await llm.warm([system])
        assert len(server.requests) == 1
        sent = server.requests[0]
        assert sent["messages"][0] == system and sent["max_tokens"] <= 2
    finally:
        await llm.close()
        await server.close()


@pytest.mark.models
async def test_an_agents_hold_pauses_the_served_llm_and_puts_it_on_one_core(llm: Any) -> None:
    """`voxline serve llm` cannot see the TTS process beside it at work: the agent's hold says so,
    and the real model's scheduler holds (only due first clauses step) on one thread, as embedded."""
    from voxline.services.threads import others_busy

    runner = web.AppRunner(create_service_app("llm", llm, Settings()), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    remote = OpenAILLM(f"http://127.0.0.1:{runner.addresses[0][1]}", hold=True)
    try:
        assert await until(lambda: not others_busy(llm.thread), 30), "another model thread stayed busy"
        assert llm.fit_threads() == 2 and not llm.schedule.held(time.time())
        assert remote.gate is not None
        remote.gate.clear()  # a reply's first piece goes to the TTS
        assert await until(lambda: llm.schedule.held(time.time()), 5)
        assert llm.fit_threads() == 1
        reply = "".join([d async for d in remote.stream([{"role": "user", "content": "Say hello."}], max_tokens=8)])
        assert reply.strip()  # a first clause is due: it is still answered while held
        remote.gate.set()  # its first audio is out
        assert await until(lambda: not llm.schedule.held(time.time()), 5)
        assert llm.fit_threads() == 2
    finally:
        await remote.close()
        await runner.cleanup()

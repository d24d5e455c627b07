"""Tools: declared three ways, offered to a (scripted) OpenAI-compatible LLM, run only for a
committed turn, timed out, a filler said when slow, cancelled with the reply."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.tool_servers import MCP_SERVER, ScriptedLLM, Webhook
from voxline.agent.models import Models
from voxline.agent.pipeline import Audio, Failed, ReplyPipeline, ReplyText, ToolUsed
from voxline.agent.tools import Tool, ToolRegistry, load_tools
from voxline.agent.tools.python import tool_from_function, tools_from_module
from voxline.bench.system import free_port
from voxline.config import Settings
from voxline.services.base import ToolCall
from voxline.services.llm.openai import OpenAILLM
from voxline.services.threads import ModelThread


class SaidTTS:
    """The TTS boundary: records what it was asked to say, answers a short tone-free buffer."""

    sample_rate = 16_000

    def __init__(self) -> None:
        self.said: list[str] = []

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        self.said.append(text)
        yield b"\x10\x00" * 1600

    async def close(self) -> None:
        return None


class Probe:
    """A slow async tool that records whether it started, finished or was cancelled."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = asyncio.Event()
        self.finished = False
        self.cancelled = False

    def tool(self, name: str = "slow_lookup") -> Tool:
        async def run(args: dict[str, Any]) -> str:
            self.started.set()
            try:
                await asyncio.sleep(self.seconds)
            except asyncio.CancelledError:
                self.cancelled = True
                raise
            self.finished = True
            return "the answer is 42"

        return Tool(name, "Look something up slowly.", {"type": "object", "properties": {}}, run)


async def run_pipeline(llm: ScriptedLLM, tools: ToolRegistry, vad_model: Any, commit: bool = True,
                       text: str = "What is the weather in Paris?") -> tuple[ReplyPipeline, SaidTTS, list[Any]]:
    tts = SaidTTS()
    models = Models(None, OpenAILLM(llm.url), tts, vad_model, ModelThread("vad"), tools=tools)  # type: ignore[arg-type]
    pipeline = ReplyPipeline(models, b"", [{"role": "system", "content": "Be brief."}], 10.0, text=text)
    if commit:
        pipeline.commit()
    pipeline.start()
    outputs = [o async for o in pipeline.outputs()]
    await models.llm.close()
    return pipeline, tts, outputs


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = await Webhook().start()
    yield hook
    await hook.close()


def webhooks_file(tmp_path: Path, url: str, suffix: str = ".yaml") -> str:
    entry = {"name": "get_weather", "description": "Today's weather in a city.", "url": f"{url}/weather",
             "headers": {"Authorization": "Bearer ${VOXLINE_TEST_HOOK_TOKEN}"},
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    path = tmp_path / f"hooks{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"tools": [entry]}))
    else:
        import yaml

        path.write_text(yaml.safe_dump({"tools": [entry]}))
    return str(path)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
async def test_a_webhook_tool_call_is_parsed_run_and_its_result_fed_back(tmp_path, webhook, vad_model, suffix,
                                                                         monkeypatch) -> None:
    monkeypatch.setenv("VOXLINE_TEST_HOOK_TOKEN", "s3cret")
    tools = await load_tools(Settings(tools_webhooks=webhooks_file(tmp_path, webhook.url, suffix)))
    llm = await ScriptedLLM([["Let me check. ", {"name": "get_weather", "arguments": {"city": "Paris"}}],
                             ["It is sunny and 21 degrees in Paris."]]).start()
    try:
        pipeline, tts, outputs = await run_pipeline(llm, tools, vad_model)
    finally:
        await llm.close()
        await tools.close()
    assert webhook.calls == [{"args": {"city": "Paris"}, "auth": "Bearer s3cret"}]
    offered = {t["function"]["name"] for t in llm.requests[0]["tools"]}
    assert offered == {"get_weather", "get_time", "end_call"}
    fed_back = llm.requests[1]["messages"]
    assert fed_back[-2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert fed_back[-2]["content"] == "Let me check."
    assert fed_back[-1]["role"] == "tool" and fed_back[-1]["tool_call_id"] == fed_back[-2]["tool_calls"][0]["id"]
    assert json.loads(fed_back[-1]["content"]) == {"city": "Paris", "sky": "sunny", "celsius": 21}
    assert tts.said[0] == "Let me check." and " ".join(tts.said[1:]) == "It is sunny and 21 degrees in Paris."
    assert not [o for o in outputs if isinstance(o, Failed)]
    assert [o.text for o in outputs if isinstance(o, ReplyText)] == ["Let me check. It is sunny and 21 degrees in Paris."]
    used = [o.result for o in outputs if isinstance(o, ToolUsed)]
    assert [(r.call.name, r.ok) for r in used] == [("get_weather", True)]
    metrics = pipeline.times.metrics()
    assert metrics["tools"][0]["name"] == "get_weather" and metrics["tool_ms"] is not None


async def test_a_slow_tool_gets_a_spoken_filler_and_a_hung_one_times_out(vad_model) -> None:
    slow, hung = Probe(1.4), Probe(30)
    tools = ToolRegistry(timeout_s=3.0, filler_after_s=0.5)
    tools.add(slow.tool("slow_lookup"))
    llm = await ScriptedLLM([[{"name": "slow_lookup"}], ["Found it: forty two."]]).start()
    try:
        _, tts, _ = await run_pipeline(llm, tools, vad_model)
        assert slow.finished and tts.said[0] == "One moment." and " ".join(tts.said[1:]) == "Found it: forty two."
        # A tool that never answers: the model is told so, within the timeout, and answers.
        tools = ToolRegistry(timeout_s=0.3, filler_after_s=5.0)
        tools.add(hung.tool("hung_lookup"))
        llm.replies = [[{"name": "hung_lookup"}], ["Sorry, the lookup is down."]]
        _, tts, outputs = await run_pipeline(llm, tools, vad_model)
    finally:
        await llm.close()
    assert hung.cancelled and not hung.finished
    assert "did not answer within 0.3 s" in llm.requests[-1]["messages"][-1]["content"]
    assert " ".join(tts.said) == "Sorry, the lookup is down."  # no filler: the timeout came first
    assert [o.result.ok for o in outputs if isinstance(o, ToolUsed)] == [False]


async def test_a_speculative_reply_stops_at_its_tool_call_and_a_dropped_one_runs_none(vad_model) -> None:
    probe = Probe(0.01)
    tools = ToolRegistry()
    tools.add(probe.tool())
    llm = await ScriptedLLM([[{"name": "slow_lookup"}], ["It is 42."]]).start()
    models = Models(None, OpenAILLM(llm.url), SaidTTS(), vad_model, ModelThread("vad"), tools=tools)  # type: ignore[arg-type]
    try:
        pipeline = ReplyPipeline(models, b"", [], 10.0, text="Look it up").start()  # speculative: not committed
        for _ in range(200):
            if llm.requests:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the model's call has arrived by now: it waits for the commit
        assert len(llm.requests) == 1 and not probe.started.is_set()
        pipeline.cancel()  # the caller went on talking: the speculation is dropped
        outputs = [o async for o in pipeline.outputs()]
        assert not probe.started.is_set() and not [o for o in outputs if isinstance(o, (ToolUsed, Audio))]
        # The same speculation, committed by the end of the turn: now the tool runs.
        llm.replies = [[{"name": "slow_lookup"}], ["It is 42."]]
        pipeline = ReplyPipeline(models, b"", [], 10.0, text="Look it up").start()
        await asyncio.sleep(0.3)
        assert not probe.started.is_set()
        pipeline.commit()
        outputs = [o async for o in pipeline.outputs()]
        assert probe.finished and [o.text for o in outputs if isinstance(o, ReplyText)] == ["It is 42."]
    finally:
        await models.llm.close()
        await llm.close()


async def test_barge_in_cancels_a_running_tool(vad_model) -> None:
    probe = Probe(30)
    tools = ToolRegistry(timeout_s=60)
    tools.add(probe.tool())
    llm = await ScriptedLLM([[{"name": "slow_lookup"}], ["never said"]]).start()
    models = Models(None, OpenAILLM(llm.url), SaidTTS(), vad_model, ModelThread("vad"), tools=tools)  # type: ignore[arg-type]
    try:
        pipeline = ReplyPipeline(models, b"", [], 10.0, text="Look it up")
        pipeline.commit()
        pipeline.start()
        await asyncio.wait_for(probe.started.wait(), 10)
        pipeline.cancel()  # what a barge-in does to the turn's pipeline
        _ = [o async for o in pipeline.outputs()]
        assert probe.cancelled and not probe.finished
        assert len(llm.requests) == 1  # nothing was fed back: the reply is gone
    finally:
        await models.llm.close()
        await llm.close()


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_mcp_server_tools_are_listed_and_called(tmp_path, transport) -> None:
    script = tmp_path / "mcp_server.py"
    script.write_text(MCP_SERVER)
    proc = None
    if transport == "stdio":
        target = f"{sys.executable} {script} stdio"
    else:
        port = free_port()
        with open(tmp_path / "mcp.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, str(script), "http", str(port)], stdout=log,
                                    stderr=subprocess.STDOUT)
        target = f"http://127.0.0.1:{port}/mcp"
    try:
        tools = await connect_mcp(target)
        try:
            assert {"add", "fail", "get_time"} <= set(tools.tools)
            assert tools.tools["add"].parameters["properties"].keys() == {"a", "b"}
            added = await tools.run(ToolCall("c1", "add", '{"a": 2, "b": 40}'))
            assert added.ok and added.output.strip() == "42"
            failed = await tools.run(ToolCall("c2", "fail", '{"reason": "no such flight"}'))
            assert not failed.ok and "no such flight" in failed.output
        finally:
            await tools.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


async def connect_mcp(target: str) -> ToolRegistry:
    """Connect, retrying while an HTTP server is still starting."""
    for attempt in range(50):
        try:
            return await load_tools(Settings(tools_mcp=(target,), tools_builtin=("time",)))
        except ValueError:
            if attempt == 49 or not target.startswith("http"):
                raise
            await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


async def test_python_functions_become_tools_with_a_schema(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_voice_tools.py").write_text('''
from typing import Literal


def book_table(restaurant: str, people: int, time: str = "19:00",
               seating: Literal["inside", "outside"] = "inside") -> dict:
    """Book a table at a restaurant.

    Args:
        restaurant: the restaurant's name
        people: how many guests
    """
    return {"booked": restaurant, "people": people, "time": time, "seating": seating}


async def is_open(restaurant: str) -> bool:
    """Whether a restaurant is open now."""
    return restaurant == "Chez Nous"


def _private() -> None:
    pass
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    tools = {t.name: t for t in tools_from_module("my_voice_tools")}
    assert set(tools) == {"book_table", "is_open"}
    book = tools["book_table"].spec()["function"]
    assert book["description"] == "Book a table at a restaurant."
    assert book["parameters"] == {
        "type": "object", "required": ["restaurant", "people"],
        "properties": {"restaurant": {"type": "string", "description": "the restaurant's name"},
                       "people": {"type": "integer", "description": "how many guests"},
                       "time": {"type": "string"}, "seating": {"enum": ["inside", "outside"]}}}
    registry = ToolRegistry()
    for tool in tools.values():
        registry.add(tool)
    booked = await registry.run(ToolCall("1", "book_table", '{"restaurant": "Chez Nous", "people": 2}'))
    assert booked.ok and json.loads(booked.output)["time"] == "19:00"
    assert (await registry.run(ToolCall("2", "is_open", '{"restaurant": "Chez Nous"}'))).output == "true"
    bad = await registry.run(ToolCall("3", "book_table", '{"people": "two", "color": 1}'))
    assert not bad.ok and "missing ['restaurant']" in bad.output
    assert not (await registry.run(ToolCall("4", "book_table", "not json"))).ok
    assert not (await registry.run(ToolCall("5", "nope", "{}"))).ok

    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(ValueError, match="no type hint"):
        tool_from_function(untyped)


def test_bad_tool_declarations_are_clear_errors(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tools: [{name: x}]")
    with pytest.raises(ValueError, match="needs a 'name' and an http"):
        asyncio.run(load_tools(Settings(tools_webhooks=str(bad))))
    bad.write_text("tools: [unclosed")
    with pytest.raises(ValueError, match="not valid yaml"):
        asyncio.run(load_tools(Settings(tools_webhooks=str(bad))))
    with pytest.raises(ValueError, match="does not exist"):
        asyncio.run(load_tools(Settings(tools_webhooks=str(tmp_path / "missing.json"))))
    with pytest.raises(ValueError, match="cannot be imported"):
        asyncio.run(load_tools(Settings(tools_module="no_such_module_here")))
    with pytest.raises(ValueError, match="unknown built-in"):
        asyncio.run(load_tools(Settings(tools_builtin=("weather",))))


class GoodbyeSTT:
    """The STT boundary: whatever was said, it was a goodbye."""

    async def transcribe(self, pcm: bytes, sample_rate: int = 16_000) -> str:
        return "Thanks, that is all. Goodbye!"

    async def close(self) -> None:
        return None


async def test_end_call_hangs_up_after_the_goodbye_is_heard(vad_model, tts, speech) -> None:
    """Over real WebRTC: the model calls end_call, says goodbye, the caller hears it, then the call ends."""
    from sentences import GOODBYE
    from tests.audio_helpers import at48k
    from tests.integration.conftest import start_server, stop_server
    from voxline.client.caller import Caller

    def respond(body: dict[str, Any]) -> list[str | dict[str, Any]]:
        # Every speculative start asks too: hang up, unless the hang-up was already called.
        if body["messages"][-1]["role"] == "tool":
            return ["Goodbye, have a lovely day!"]
        return [{"name": "end_call"}]

    llm = await ScriptedLLM([], respond=respond).start()
    settings = Settings(session_create_rate_per_min=1000, llm="openai", llm_url=llm.url)
    models = Models(GoodbyeSTT(), OpenAILLM(llm.url), tts, vad_model, ModelThread("vad"))  # type: ignore[arg-type]
    await models.load_tools(settings)
    running, cleanup = await start_server(settings, models)
    try:
        async with Caller(running.url) as caller:
            said = await caller.say(at48k(speech(GOODBYE)))
            ended = await caller.wait_for(lambda e: e["type"] == "session.ended", 60)
            assert ended is not None and ended["reason"] == "agent ended the call", caller.events
            heard = caller.first_sound_after(said)
            assert heard is not None and heard < ended["ts"], "the goodbye was not heard before the hang-up"
            assert any(e["type"] == "log" and e["stage"] == "tool" and "end_call answered" in e["message"]
                       for e in caller.events)
            metrics = caller.of_type("turn.metrics")[0]["metrics"]
            assert [t["name"] for t in metrics["tools"]] == ["end_call"] and metrics["tool_ms"] is not None
            session = await running.media.get_session(caller.session_id)
            assert session is not None and session.end_reason == "agent ended the call"
            assert session.turn_metrics[0]["tools"][0]["name"] == "end_call"  # the session record keeps it
    finally:
        await stop_server(cleanup)
        # Not models.close(): the TTS and the VAD model are the test session's, shared with later tests.
        await models.llm.close()
        if models.tools is not None:
            await models.tools.close()
        models.vad_thread.close()
        await llm.close()

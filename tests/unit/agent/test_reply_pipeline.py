"""ReplyPipeline on fake models and a virtual clock: outputs in order, early words, faults, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fakes import VirtualClock, fake_models, settle, speech
from voxline.agent.pipeline import Audio, Delta, Failed, ReplyPipeline, ReplyText, Transcript, with_timeout

HISTORY = [{"role": "system", "content": "test"}]


async def collect(pipeline: ReplyPipeline, clock: VirtualClock, seconds: float = 3.0) -> list[object]:
    out: list[object] = []

    async def read() -> None:
        async for item in pipeline.outputs():
            out.append(item)

    reader = asyncio.create_task(read())
    await clock.advance(seconds)
    await asyncio.wait_for(reader, 1.0)
    return out


async def test_outputs_come_in_order_and_the_words_are_told_before_the_reply() -> None:
    clock = VirtualClock()
    models = fake_models(clock)
    models.stt.texts = ["What time is it?"]
    heard: list[tuple[str, int]] = []
    pipeline = ReplyPipeline(models, speech(500), HISTORY, 5.0,  # type: ignore[arg-type]
                             on_transcript=lambda text: heard.append((text, len(models.llm.calls))), clock=clock.time)
    pipeline.start()
    out = await collect(pipeline, clock)
    assert isinstance(out[0], Transcript) and out[0].text == "What time is it?"
    assert heard == [("What time is it?", 0)]  # the end-of-turn cue comes before any LLM work
    assert "".join(o.text for o in out if isinstance(o, Delta)) == "It is noon. Anything else?"
    assert [o.text for o in out if isinstance(o, ReplyText)] == ["It is noon. Anything else?"]
    assert any(isinstance(o, Audio) for o in out)
    assert models.llm.calls[0][-1] == {"role": "user", "content": "What time is it?"}
    metrics = pipeline.times.metrics()
    assert metrics["stt_ms"] == 100.0  # the virtual clock's own delays, exactly


async def test_no_words_means_no_reply() -> None:
    clock = VirtualClock()
    models = fake_models(clock)
    models.stt.texts = [" "]
    pipeline = ReplyPipeline(models, speech(300), HISTORY, 5.0, clock=clock.time)  # type: ignore[arg-type]
    pipeline.start()
    assert [type(o) for o in await collect(pipeline, clock)] == [Transcript]
    assert models.llm.calls == []


async def test_each_stage_failure_is_reported_with_its_stage() -> None:
    for stage in ("stt", "llm", "tts"):
        clock = VirtualClock()
        models = fake_models(clock)
        if stage == "stt":
            models.stt.texts = [RuntimeError("down")]
        elif stage == "llm":
            models.llm.fail = RuntimeError("down")
        else:
            models.tts.fail = RuntimeError("down")
        pipeline = ReplyPipeline(models, speech(300), HISTORY, 5.0, clock=clock.time)  # type: ignore[arg-type]
        pipeline.start()
        failed = [o for o in await collect(pipeline, clock) if isinstance(o, Failed)]
        assert [f.stage for f in failed] == [stage]


async def test_cancel_stops_the_work_before_anything_more_is_made() -> None:
    clock = VirtualClock()
    models = fake_models(clock)
    models.llm.token_s = 0.5  # a slow reply
    pipeline = ReplyPipeline(models, speech(300), HISTORY, 5.0, clock=clock.time)  # type: ignore[arg-type]
    pipeline.start()
    await clock.advance(0.2)  # STT done, the LLM has begun
    assert len(models.llm.calls) == 1
    pipeline.cancel()
    await settle()
    tts_before = len(models.tts.calls)
    await clock.advance(5.0)
    assert len(models.tts.calls) == tts_before  # nothing more is synthesized
    assert pipeline._task is not None and pipeline._task.cancelled()


async def test_a_cancel_that_meets_a_ready_item_still_stops_the_stream() -> None:
    """A barge-in that lands just as the LLM's next token is ready must still stop the stream.

    On Python 3.11 `asyncio.wait_for` returns the ready result instead of raising the cancel;
    `with_timeout` built on it lost the barge-in and the interrupted reply's LLM ran on to
    `max_tokens`. Each number of loop steps between the token and the cancel is tried, since
    the gap was open for only some of them.
    """
    for steps in range(4):
        tokens: asyncio.Queue[str] = asyncio.Queue()
        closed = asyncio.Event()

        async def llm() -> AsyncIterator[str]:
            try:
                while True:
                    yield await tokens.get()
            finally:
                closed.set()  # the model thread's stop flag is set here

        async def consume() -> None:
            async for _ in with_timeout(llm(), 5.0):
                pass

        task = asyncio.create_task(consume())
        for _ in range(2):
            await asyncio.sleep(0)  # the consumer waits for the first token
        tokens.put_nowait("Once")
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=1.0)
        assert done and task.cancelled(), f"the cancel was lost {steps} loop steps after a token"
        assert closed.is_set()


async def test_a_model_that_calls_a_tool_every_round_is_cut_at_tool_max_rounds() -> None:
    """README: `tool_max_rounds` bounds the LLM -> tools -> LLM rounds of one reply. A model that
    asks for a tool whatever it is told runs the tool `max_rounds` times; the round after is
    offered no tools, so it answers in words."""
    from voxline.agent.tools.registry import Tool, ToolRegistry
    from voxline.services.base import ToolCall

    clock = VirtualClock()
    models = fake_models(clock)
    models.stt.texts = ["What time is it?"]
    offered: list[bool] = []
    ran: list[dict[str, object]] = []

    class LoopingLLM:
        name = "looping"
        supports_tools = True

        async def stream(self, messages: list, max_tokens: int | None = None) -> AsyncIterator[str]:
            offered.append(False)
            yield "It is noon."

        async def stream_tools(self, messages: list, tools: list, max_tokens: int | None = None
                               ) -> AsyncIterator[object]:
            offered.append(True)
            yield ToolCall(f"call_{len(offered)}", "clock", "{}")

        async def close(self) -> None:
            return None

    async def run(args: dict[str, object]) -> str:
        ran.append(args)
        return "12:00"

    tools = ToolRegistry(max_rounds=3, filler_text="")
    tools.add(Tool("clock", "The time now.", {"type": "object", "properties": {}}, run))
    models.llm = LoopingLLM()  # type: ignore[assignment]
    models.tools = tools  # type: ignore[attr-defined]
    pipeline = ReplyPipeline(models, speech(500), HISTORY, 5.0, clock=clock.time)  # type: ignore[arg-type]
    pipeline.commit()
    pipeline.start()
    out = await collect(pipeline, clock)
    assert offered == [True, True, True, False], offered
    assert len(ran) == 3
    assert [o.text for o in out if isinstance(o, ReplyText)] == ["It is noon."]

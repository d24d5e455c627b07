"""A reply's first TTS piece is short, goes to TTS while the LLM is still writing, and no word
is lost or spoken twice: ReplyPipeline with fakes at the model boundary (no models loaded)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from voxline.agent.pipeline import Audio, ReplyPipeline, ReplyText

REPLY = ("Two plus two is a mathematical operation that represents the sum of two numbers, "
         "and the answer is four. It is one of the first sums children learn.")


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


class FakeTTS:
    """Records what it is asked to say; one 10 ms chunk of sound per word."""

    name = "fake-tts"
    sample_rate = 16_000

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.first_asked = asyncio.Event()

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        self.asked.append(text)
        self.first_asked.set()
        await asyncio.sleep(0)
        yield b"\x10\x27" * 160 * len(text.split())

    async def close(self) -> None: ...


class FakeLLM:
    """Streams REPLY a token at a time; after `hold_after` tokens it waits (up to 2 s) for the
    TTS to have been asked for something, and notes whether it had been."""

    name = "fake-llm"

    def __init__(self, tts: FakeTTS, hold_after: int) -> None:
        self.tts = tts
        self.hold_after = hold_after
        self.tts_started_mid_reply: bool | None = None

    async def stream(self, messages: object, max_tokens: int | None = None) -> AsyncIterator[str]:
        tokens = re.findall(r" ?\w+|[^\w\s]", REPLY)
        for i, token in enumerate(tokens):
            if i == self.hold_after:
                try:
                    await asyncio.wait_for(self.tts.first_asked.wait(), 2.0)
                    self.tts_started_mid_reply = True
                except TimeoutError:
                    self.tts_started_mid_reply = False
            yield token
            await asyncio.sleep(0)

    async def close(self) -> None: ...


async def run_pipeline(first_piece_words: int, hold_after: int = 9) -> tuple[FakeLLM, FakeTTS, list[object]]:
    tts = FakeTTS()
    llm = FakeLLM(tts, hold_after)
    models = SimpleNamespace(stt=None, llm=llm, tts=tts, first_piece_words=first_piece_words)
    pipeline = ReplyPipeline(models, b"", [], timeout_s=5.0, text="What is two plus two?")  # type: ignore[arg-type]
    pipeline.start()
    outputs = [item async for item in pipeline.outputs()]
    return llm, tts, outputs


async def test_the_first_piece_is_short_and_goes_to_tts_before_the_sentence_ends() -> None:
    llm, tts, outputs = await run_pipeline(first_piece_words=6)
    assert 3 <= len(tts.asked[0].split()) <= 6, tts.asked
    # Nine tokens in ("Two plus two is a mathematical operation that represents"), far from the
    # end of the first sentence, the first piece was already with the TTS.
    assert llm.tts_started_mid_reply is True
    assert any(isinstance(o, Audio) for o in outputs)


async def test_every_word_of_the_reply_is_spoken_once_in_order() -> None:
    _, tts, outputs = await run_pipeline(first_piece_words=6)
    assert words(" ".join(tts.asked)) == words(REPLY)
    reply = [o for o in outputs if isinstance(o, ReplyText)]
    assert reply and reply[0].text == REPLY


@pytest.mark.parametrize("limit", [0])
async def test_without_the_word_limit_the_first_piece_waits_for_a_clause(limit: int) -> None:
    llm, tts, _ = await run_pipeline(first_piece_words=limit)
    assert tts.asked[0] == "Two plus two is a mathematical operation that represents the sum of two numbers,"
    assert llm.tts_started_mid_reply is False


async def test_by_default_the_first_piece_goes_to_tts_within_six_tokens_of_a_long_opening() -> None:
    """#15.1: what the caller waits for before the first sample is the LLM's tokens up to the
    cut and the TTS of that piece: with the default limit, "Two plus two" is with the TTS
    before the model has written "mathematical operation"."""
    from voxline.config import Settings

    limit = Settings().tts_first_piece_words
    llm, tts, outputs = await run_pipeline(first_piece_words=limit, hold_after=6)
    assert llm.tts_started_mid_reply is True
    assert tts.asked[0] == "Two plus two"
    assert words(" ".join(tts.asked)) == words(REPLY)

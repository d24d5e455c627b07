"""The latency work changes nothing a caller would notice but the wait.

Speculative replies (STT, LLM and TTS started at the caller's pause) and Whisper's shortened
window must give the same transcripts and answers as the plain path, never answer before the
caller has finished, and never cut a reply short.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator

import numpy as np
import pytest

from audio_helpers import at48k, floor48k, until, words
from sentences import PLANET, QUESTIONS, SPAIN, SPLIT, STATEMENTS, STOP, STORY
from voxline.audio.resample import resample_s16
from voxline.client.audio import RATE, speech_end_sample
from voxline.client.call import call
from voxline.config import Settings

from .conftest import Running, start_server, stop_server

pytestmark = pytest.mark.models
_ASKED = itertools.count()  # a new prompt each time (a cached one would leave one token to evaluate)
# Each question with words a sensible answer contains.
ON_TOPIC = {SPAIN: {"madrid", "spain"}, PLANET: {"earth", "planet"}}


@pytest.fixture(scope="module")
async def plain_server(models) -> AsyncIterator[Running]:  # type: ignore[no-untyped-def]
    running, cleanup = await start_server(
        Settings(speculative_replies=False, max_sessions=4, session_create_rate_per_min=1000), models)
    yield running
    await stop_server(cleanup)


async def test_speculative_replies_change_no_words(voice_server, plain_server, speech) -> None:
    for question, answer_words in ON_TOPIC.items():
        fast = await call(voice_server.url, at48k(speech(question.text)))
        plain = await call(plain_server.url, at48k(speech(question.text)))
        assert fast.error is None and plain.error is None
        assert fast.turn_metrics[-1]["speculative"] is True
        assert plain.turn_metrics[-1]["speculative"] is False
        # Two calls never carry bit-identical audio (Opus, jitter, VAD window alignment), so
        # Whisper may differ by a word, and llama.cpp's greedy output is not bit-stable across
        # KV-cache states; what must hold either way: the question's words are heard, and the
        # answer is on topic.
        for result in (fast, plain):
            assert question.heard <= words(result.transcript), result.transcript
            assert answer_words & words(result.reply_text), result.reply_text


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words): the numerator and denominator of the word error rate."""
    def norm(text: str) -> list[str]:
        return re.findall(r"[a-z0-9']+", text.lower().replace("2", "two").replace("7", "seven"))

    ref, hyp = norm(reference), norm(hypothesis)
    row = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        diagonal, row[0] = row[0], i
        for j in range(1, len(hyp) + 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ref[i - 1] != hyp[j - 1]))
    return row[len(hyp)], len(ref)


async def test_whisper_short_window_transcribes_no_worse_than_the_full_window(stt, speech) -> None:
    texts = [*(q.text for q in QUESTIONS[2:6]), STORY, STOP.text, *STATEMENTS[1:5]]
    saved = stt.window_s
    totals = {}
    try:
        for window in (30, saved):
            stt.window_s = window
            edits = words_total = 0
            for text in texts:
                e, n = word_errors(text, await stt.transcribe(speech(text)))
                edits, words_total = edits + e, words_total + n
            totals[window] = edits / words_total
    finally:
        stt.window_s = saved
    assert saved < 30
    assert totals[saved] <= totals[30] + 0.02, totals


async def test_no_reply_before_the_caller_finishes_and_none_cut_short(voice_server, speech, stt) -> None:
    # A pause inside the question, shorter than the end-of-turn silence but longer than the
    # point where speculation starts: the early work must be dropped, not spoken.
    first = at48k(speech(SPLIT[0]))
    first = first[:speech_end_sample(first)]  # the voice ends with silence of its own
    second = at48k(speech(SPLIT[1]), pad_s=0.0)
    second = second[np.flatnonzero(np.abs(second) > 500)[0]:]
    pause = floor48k(0.35)
    question = np.concatenate([first, pause, second])
    result = await call(voice_server.url, question)
    assert result.error is None
    finals = [e for e in result.events if e["type"] == "transcript.final"]
    # "What is the capital" reads as a complete question, so the turn may end at the pause;
    # then the caller goes on, and the next turn continues it: transcribed whole, marked
    # `continued` (the page merges it into the first). One answer, to the whole question.
    assert finals and all(f["continued"] for f in finals[1:]), finals
    assert SPAIN.heard <= words(finals[-1]["text"]), finals
    # An early reply may have been written before the caller went on; it is never heard (the
    # voice-to-voice check below: the first reply sound comes after the whole question).
    replies = [e for e in result.events if e["type"] == "agent.text" and e.get("final")]
    assert replies and replies[-1]["turn"] == finals[-1]["turn"], replies
    # Voice-to-voice is measured from the end of the whole question: positive means the
    # reply started after the caller finished.
    assert result.voice_to_voice_ms is not None and result.voice_to_voice_ms > 0
    heard = words(await stt.transcribe(resample_s16(result.reply_audio.tobytes(), RATE, 16_000)))
    said = list(words(result.reply_text))
    assert said, result.reply_text
    last_words = [w for w in result.reply_text.lower().replace(".", " ").split() if len(w) > 2][-2:]
    assert any(w.strip(",!?'\"") in heard for w in last_words), (heard, result.reply_text)


async def test_callers_waiting_at_once_are_transcribed_in_one_batch_with_the_same_words(stt, speech) -> None:
    import asyncio
    import threading

    texts = [QUESTIONS[6].text, QUESTIONS[7].text, STATEMENTS[5], STATEMENTS[6]]
    alone = [stt.transcribe_sync(speech(t)) for t in texts]
    batches: list[int] = []
    real = stt._short_windows

    def counted(audios: list[np.ndarray]) -> list[str]:
        batches.append(len(audios))
        return real(audios)

    gate = threading.Event()
    busy = stt.thread.submit(gate.wait)  # another caller's turn holds the model: these four wait together
    stt._short_windows = counted
    try:
        tasks = [asyncio.create_task(stt.transcribe(speech(t))) for t in texts]
        await asyncio.sleep(0.1)
        gate.set()
        together = await asyncio.gather(*tasks)
    finally:
        stt._short_windows = real
        busy.result(timeout=5)
    assert batches == [4]
    assert together == alone  # batching changes no word


async def test_the_embedded_llm_runs_on_one_core_while_another_model_works(llm) -> None:
    import threading

    from voxline.services.threads import ModelThread, others_busy

    other, gate = ModelThread("stt"), threading.Event()
    try:
        # A call's thread is no longer busy once its result is handed over (ModelThread clears busy
        # first, tests/unit/services/test_model_threads.py), but an earlier test's stream that its
        # consumer left may still be finishing its current item: start where no other model works.
        assert await until(lambda: not others_busy(llm.thread), 30), "another model thread stayed busy"
        assert llm.fit_threads() == llm.threads == 2
        assert llm.sequences.threads() == (1, 2)  # one token's step on one thread, a prompt on two
        held = other.submit(gate.wait)  # another caller's STT at work
        assert await until(lambda: other.busy, 5)
        assert llm.fit_threads() == 1 and llm.running_threads == 1
        assert llm.sequences.threads() == (1, 1)
        reply = "".join([d async for d in llm.stream([{"role": "user", "content": "Say hello."}], max_tokens=8)])
        assert reply.strip()  # it still answers on one thread
        gate.set()
        held.result(timeout=5)
        assert await until(lambda: not other.busy, 5)
        assert llm.fit_threads() == 2 and llm.sequences.threads() == (1, 2)
    finally:
        gate.set()
        other.close()


async def test_the_embedded_llm_decodes_one_token_on_one_thread_and_a_prompt_on_two(llm, monkeypatch) -> None:
    """A one-token step on two passive OpenMP threads is ~400 sleeps and wake-ups (33 ms a token on
    this idle 2-core VM, 18 on one thread): a caller's reply steps on `decode_threads` (1), its
    prompt still on `threads` (65 against 84 ms for 13 tokens)."""
    from voxline.services.threads import others_busy

    assert await until(lambda: not others_busy(llm.thread), 30), "another model thread stayed busy"
    seen: list[tuple[int, int]] = []  # (tokens in the decode, the threads llama.cpp runs it on)
    real = llm.sequences.decode

    def decode(entries, spare=()):  # type: ignore[no-untyped-def]
        one, batch = llm.sequences.threads()
        n = sum(len(e.tokens) for e in entries)
        seen.append((n, one if n == 1 else batch))
        return real(entries, spare)

    monkeypatch.setattr(llm.sequences, "decode", decode)
    ask = f"Name three colours, please ({next(_ASKED)})."  # never cached whole by an earlier run
    reply = "".join([d async for d in llm.stream([{"role": "user", "content": ask}], max_tokens=8)])
    assert reply.strip()
    (prompt, on), *steps = seen
    assert prompt > 1 and on == 2  # the prompt's new tokens on both threads
    assert steps and all(step == (1, 1) for step in steps)


async def test_replies_asked_at_once_are_generated_together_with_the_same_words(llm, monkeypatch) -> None:
    """Two callers' replies interleave token by token (one sequence each in one context), not
    one after the other: the second caller's first words come before the first reply ends.
    Greedy decoding in a batch gives the words each reply gets alone."""
    import time

    asked = ["What is the capital of France?", "What color is the sky on a clear day?"]
    prompts = [[{"role": "user", "content": q}] for q in asked]
    monkeypatch.setattr(llm, "temperature", 0.0)  # greedy (the served default): the words are comparable

    async def reply(messages) -> tuple[str, list[float]]:  # type: ignore[no-untyped-def]
        times, parts = [], []
        async for delta in llm.stream(messages, max_tokens=24):
            times.append(time.monotonic())
            parts.append(delta)
        return "".join(parts), times

    alone = [(await reply(m))[0] for m in prompts]
    (first, t1), (second, t2) = await asyncio.gather(*(reply(m) for m in prompts))
    assert len(t1) > 3 and len(t2) > 3
    assert t2[0] < t1[-1] and t1[0] < t2[-1], "one reply waited for the other to end"
    assert [first, second] == alone


def test_a_full_kv_cache_drops_the_caches_of_idle_slots_not_a_reply(llm) -> None:
    """The replies share one KV cache smaller than all their contexts together: when it is full,
    what idle slots kept (only for a prefix) gives way, and the reply's tokens go in."""
    from voxline.services.llm.sequences import Entry, Sequences

    seqs = Sequences(llm.llama, slots=3, n_ctx=256, threads=1, n_batch=128, cells=256)
    try:
        for slot in (0, 1):  # two finished replies' caches: 240 of the 256 cells
            seqs.decode([Entry(slot, list(range(100, 220)), 0, False)])
        where = seqs.decode([Entry(2, list(range(300, 360)), 0, True)], spare=[0, 1])
        assert where == [59]
        assert seqs.cached[0] == seqs.cached[1] == [] and len(seqs.cached[2]) == 60
    finally:
        seqs.close()


async def test_first_pieces_asked_at_once_are_made_side_by_side_with_the_same_audio(tts) -> None:
    """Two callers' first pieces are synthesized at the same time, by the two sessions of
    `tts_sessions=2` (the second of one thread), and each sounds as it does from one session
    alone (Piper's noise off)."""
    import threading

    from piper import SynthesisConfig

    from voxline.services.tts.piper import PiperTTS

    quiet = SynthesisConfig(volume=0.8, noise_scale=0.0, noise_w_scale=0.0)
    two = PiperTTS(sessions=2)
    try:
        tts.syn_config = two.syn_config = quiet
        texts = ["Two plus two is", "The sky is blue."]
        alone = [b"".join([pcm async for pcm in tts.synthesize(t)]) for t in texts]
        both, workers = threading.Barrier(2, timeout=10), []
        real = two._synthesize

        def side_by_side(text: str, stop: threading.Event):  # type: ignore[no-untyped-def]
            workers.append(two.thread.worker())
            both.wait()  # each waits for the other to be under way too: one session alone never passes
            yield from real(text, stop)

        two._synthesize = side_by_side  # type: ignore[method-assign]

        async def say(text: str) -> bytes:
            return b"".join([pcm async for pcm in two.synthesize(text)])

        together = await asyncio.gather(*(say(t) for t in texts))
        assert sorted(workers) == [0, 1]
        for a, b in zip(alone, together):
            x, y = np.frombuffer(a, dtype=np.int16), np.frombuffer(b, dtype=np.int16)
            assert x.size == y.size > 0
            assert int(np.abs(x.astype(np.int32) - y).max()) <= 2  # one vs two onnxruntime threads: rounding (1 seen)
    finally:
        tts.syn_config = SynthesisConfig(volume=0.8)
        await two.close()

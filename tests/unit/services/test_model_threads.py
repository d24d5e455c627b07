"""Model threads serve waiting work earliest deadline first: every waiting caller's first
piece before the rest of anyone's reply (a virtual clock; fakes at the model boundary)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace

import pytest

from audio_helpers import until
from voxline.agent.pipeline import ReplyPipeline
from voxline.services.threads import ModelThread, deadline


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_waiting_work_is_served_by_deadline_and_undated_work_in_arrival_order() -> None:
    clock = Clock()
    thread = ModelThread("test", clock=clock)
    gate, order = threading.Event(), []
    busy = thread.submit(gate.wait)  # the thread is busy: everything below waits its turn
    jobs = [thread.submit(lambda: order.append("A rest of reply"), due=clock.now + 2.0),
            thread.submit(lambda: order.append("B first piece")),  # due now
            thread.submit(lambda: order.append("C rest of reply"), due=clock.now + 1.0)]
    clock.now += 0.5
    jobs.append(thread.submit(lambda: order.append("D first piece")))  # due now, after B
    gate.set()
    for job in [busy, *jobs]:
        job.result(timeout=5)
    assert order == ["B first piece", "D first piece", "C rest of reply", "A rest of reply"]
    thread.close()


async def test_the_tasks_deadline_applies_to_its_model_calls() -> None:
    clock = Clock()
    thread = ModelThread("test", clock=clock)
    gate, order = threading.Event(), []
    busy = thread.submit(gate.wait)

    async def call(name: str, due: float | None) -> None:
        deadline.set(due)
        await thread.run(order.append, name)

    tasks = [asyncio.create_task(call("later", clock.now + 5)), asyncio.create_task(call("now", None))]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(*tasks)
    busy.result(timeout=5)
    assert order == ["now", "later"]
    thread.close()


async def test_a_stream_still_waiting_when_the_thread_closes_ends_with_an_error() -> None:
    thread = ModelThread("test")
    gate = threading.Event()
    thread.submit(gate.wait)

    def make(stop: threading.Event) -> Iterator[int]:
        yield 1

    async def consume() -> list[int]:
        return [x async for x in thread.stream(make)]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    thread.close()
    gate.set()
    with pytest.raises(RuntimeError, match="closed"):
        await asyncio.wait_for(task, 5)


class ThreadTTS:
    """A TTS whose synthesis runs in one real ModelThread shared by every caller, like Piper;
    each piece waits for a permit, so the test decides when the thread may go on."""

    name = "thread-tts"
    sample_rate = 16_000

    def __init__(self) -> None:
        self.thread = ModelThread("tts")
        self.started: list[str] = []
        self.order: list[str] = []
        self.permits = threading.Semaphore(0)

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        def make(stop: threading.Event) -> Iterator[bytes]:
            self.started.append(text)
            self.permits.acquire(timeout=5)
            self.order.append(text)
            yield b"\x10\x27" * 16_000  # a second of sound per piece

        async for pcm in self.thread.stream(make):
            yield pcm

    async def close(self) -> None:
        self.thread.close()


class ScriptedLLM:
    name = "scripted"

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies

    async def stream(self, messages: list[dict[str, str]], max_tokens: int | None = None) -> AsyncIterator[str]:
        for word in self.replies[messages[-1]["content"]].split(" "):
            yield word + " "
            await asyncio.sleep(0)


async def test_a_second_callers_first_piece_goes_before_the_rest_of_the_first_callers_reply() -> None:
    tts = ThreadTTS()
    llm = ScriptedLLM({"A?": "One. Two. Three.", "B?": "Yes. Sure."})
    models = SimpleNamespace(stt=None, llm=llm, tts=tts, first_piece_words=6)
    a = ReplyPipeline(models, b"", [], timeout_s=10.0, text="A?").start()  # type: ignore[arg-type]
    assert await until(lambda: tts.started == ["One."], 5)  # caller A's first piece holds the TTS thread
    other = threading.Event()
    busy = tts.thread.submit(other.wait)  # someone else's work, due now: next in line
    tts.permits.release()
    # A's "Two." is queued while that work runs.
    assert await until(lambda: [e[3] is busy for e in tts.thread._heap] == [False] and busy.running(), 5)
    b = ReplyPipeline(models, b"", [], timeout_s=10.0, text="B?").start()  # type: ignore[arg-type]
    assert await until(lambda: len(tts.thread._heap) == 2, 5)  # and then caller B's first piece
    other.set()
    busy.result(timeout=5)
    for _ in range(10):
        tts.permits.release()
    await asyncio.wait_for(asyncio.gather(_drain(a), _drain(b)), 10)
    # A's "Two." came first but is due only when "One." has played out (a second of audio);
    # caller B is waiting in silence now.
    assert tts.order.index("Yes.") < tts.order.index("Two."), tts.order
    await tts.close()


async def _drain(pipeline: ReplyPipeline) -> None:
    async for _ in pipeline.outputs():
        pass


def test_waiting_batchable_work_of_one_key_runs_together_earliest_due_first_up_to_the_limit() -> None:
    clock = Clock()
    thread = ModelThread("test", clock=clock)
    gate, calls = threading.Event(), []

    def run(items: list[str]) -> list[str]:
        calls.append(list(items))
        return [i.upper() for i in items]

    busy = thread.submit(gate.wait)
    late = thread.submit(lambda: calls.append(["plain, due later"]), due=clock.now + 5)
    jobs = {name: thread.submit_batch("stt", name, run, limit=3, due=clock.now + due)
            for name, due in (("c", 0.3), ("a", 0.1), ("d", 0.4), ("b", 0.2))}
    other = thread.submit_batch("other", "x", run, limit=3, due=clock.now + 0.15)
    gate.set()
    busy.result(timeout=5)
    assert {k: f.result(timeout=5) for k, f in jobs.items()} == {"a": "A", "b": "B", "c": "C", "d": "D"}
    assert other.result(timeout=5) == "X" and late.result(timeout=5) is None
    # a, b, c together (d over the limit); another key is never mixed in; then by deadline.
    assert calls == [["a", "b", "c"], ["x"], ["d"], ["plain, due later"]]
    thread.close()


def test_a_failed_batch_fails_each_of_its_callers_and_the_thread_serves_on() -> None:
    thread = ModelThread("test")
    gate = threading.Event()

    def boom(items: list[int]) -> list[int]:
        raise ValueError("model fault")

    busy = thread.submit(gate.wait)
    jobs = [thread.submit_batch("stt", i, boom, limit=4) for i in range(2)]
    short = thread.submit_batch("short", 1, lambda items: [], limit=4)  # wrong number of results
    cancelled = thread.submit_batch("stt", 9, boom, limit=4)
    cancelled.cancel()
    gate.set()
    busy.result(timeout=5)
    for job in jobs:
        with pytest.raises(ValueError, match="model fault"):
            job.result(timeout=5)
    with pytest.raises(RuntimeError, match="gave 0 results"):
        short.result(timeout=5)
    assert thread.submit(lambda: 42).result(timeout=5) == 42
    thread.close()


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `condition` (from a test outside any event loop)."""
    import time

    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


def test_others_busy_sees_another_model_at_work_but_not_the_vad_nor_itself() -> None:
    from voxline.services.threads import others_busy

    llm, stt, vad = ModelThread("llm"), ModelThread("stt"), ModelThread("vad", shares_cores=False)
    mine = (llm, stt, vad)  # not the threads other tests of this process left behind
    gate, seen = threading.Event(), []
    held = vad.submit(gate.wait)
    assert wait_for(lambda: vad.busy)
    assert not others_busy(llm, mine)  # the VAD's small windows do not count
    held_stt = stt.submit(gate.wait)
    assert wait_for(lambda: stt.busy)
    assert others_busy(llm, mine) and not others_busy(stt, mine)
    gate.set()
    held.result(timeout=5), held_stt.result(timeout=5)
    assert wait_for(lambda: not stt.busy)
    llm.submit(lambda: seen.append(others_busy(llm, mine))).result(timeout=5)  # its own work is not another's
    assert seen == [False]
    for t in (llm, stt, vad):
        t.close()


def test_a_model_thread_is_no_longer_busy_when_its_caller_hears_the_result() -> None:
    """`busy` clears before the result is handed over: a caller that reads `others_busy` right
    after its own model call never sees that finished call as another model at work."""
    from voxline.services.threads import others_busy

    stt, llm = ModelThread("stt"), ModelThread("llm")
    seen: list[bool] = []
    done = stt.submit(lambda: "words")
    done.add_done_callback(lambda _: seen.append(others_busy(llm, (stt, llm))))  # runs as the result is set
    batch = stt.submit_batch("k", 1, lambda items: items, limit=4)
    batch.add_done_callback(lambda _: seen.append(stt.busy))
    failed = stt.submit(lambda: 1 / 0)
    failed.add_done_callback(lambda _: seen.append(stt.busy))
    assert done.result(timeout=5) == "words" and batch.result(timeout=5) == 1
    assert wait_for(lambda: failed.done())
    assert seen == [False, False, False]
    for t in (stt, llm):
        t.close()


def test_work_nobody_waits_for_yet_gives_way_to_another_models_due_work_until_its_lead() -> None:
    """Caller A's rest of reply (TTS, due in 2 s) waits while caller B's first clause is decoded
    (LLM, due now), and runs as soon as that ends; work due within the lead runs at once."""
    clock = Clock()
    tts, llm = ModelThread("tts", clock=clock, lead_s=0.5), ModelThread("llm", clock=clock, lead_s=0.5)
    gate, order = threading.Event(), []
    first_clause = llm.submit(gate.wait)  # due now: B waits in silence
    assert wait_for(lambda: llm.busy and llm.urgent)
    rest = tts.submit(lambda: order.append("A rest of reply"), due=clock.now + 2.0)
    soon = tts.submit(lambda: order.append("C next clause, due in 0.3 s"), due=clock.now + 0.3)
    assert wait_for(lambda: order == ["C next clause, due in 0.3 s"])
    assert not wait_for(lambda: rest.done(), timeout=0.2)  # A's waits: B's first clause has the cores
    clock.now += 1.6  # within the lead of its deadline: it runs whatever else works
    assert wait_for(lambda: rest.done())
    later = tts.submit(lambda: order.append("A later clause"), due=clock.now + 5.0)
    assert not wait_for(lambda: later.done(), timeout=0.2)
    gate.set()  # B's first clause is done: work ahead goes on
    assert wait_for(lambda: later.done())
    first_clause.result(timeout=5), soon.result(timeout=5)
    assert order == ["C next clause, due in 0.3 s", "A rest of reply", "A later clause"]
    # Work ahead of its deadline does not make others give way.
    ahead = llm.submit(gate.wait, due=clock.now + 5.0)
    gate.clear()
    assert wait_for(lambda: llm.busy) and not llm.urgent
    tts.submit(lambda: order.append("D rest of reply"), due=clock.now + 5.0).result(timeout=5)
    gate.set()
    ahead.result(timeout=5)
    for t in (tts, llm):
        t.close()


def test_a_model_with_two_workers_runs_two_callers_work_at_once_earliest_due_first() -> None:
    """Two copies of a model (two Piper sessions) serve one queue: B's and C's first pieces run
    side by side, each in its own worker, before A's rest of reply."""
    clock = Clock()
    tts = ModelThread("tts", clock=clock, workers=2, lead_s=0.0)
    both, order, seen = threading.Barrier(2, timeout=5), [], []

    def piece(name: str) -> None:
        seen.append(tts.worker())
        order.append(name)  # started
        both.wait()  # each waits for the other to be under way: one worker alone never passes

    gate = threading.Event()
    held = [tts.submit(gate.wait), tts.submit(gate.wait)]  # both workers busy: the work below queues
    assert wait_for(lambda: tts.busy and len([b for b in tts._busy if b]) == 2)
    rest = tts.submit(lambda: order.append("A rest of reply"), due=clock.now + 2.0)
    firsts = [tts.submit(lambda: piece("B first piece")), tts.submit(lambda: piece("C first piece"))]
    gate.set()
    for job in [*held, *firsts, rest]:
        job.result(timeout=5)
    assert sorted(seen) == [0, 1]
    assert sorted(order[:2]) == ["B first piece", "C first piece"] and order[2] == "A rest of reply"
    tts.close()
    assert tts.join()


def test_a_caller_alone_is_served_by_the_first_worker() -> None:
    """The second worker (a one-thread Piper session) takes work only while the first is busy."""
    tts = ModelThread("tts", workers=2)
    assert [tts.submit(tts.worker).result(timeout=5) for _ in range(20)] == [0] * 20
    tts.close()

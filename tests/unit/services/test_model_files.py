"""Model files of your own: a missing or wrong one is one line and exit 2, before any model loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from voxline.config import Settings
from voxline.services import model_files
from voxline.services.model_files import ModelFileError

SRC = Path(__file__).resolve().parents[3] / "src"


def whisper_dir(path: Path, vocabulary: int) -> Path:
    """The files faster-whisper reads, with `vocabulary` tokens (51864: English-only; more: multilingual)."""
    path.mkdir()
    for name in ("model.bin", "config.json", "tokenizer.json"):
        (path / name).write_text("{}")
    (path / "vocabulary.txt").write_text("t\n" * vocabulary)
    return path


def voxline(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voxline", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "notes.gguf").write_text("not a model")
    (tmp_path / "empty").mkdir()
    (tmp_path / "voice.onnx").write_bytes(b"\x08\x07" + bytes(64))  # opens like an ONNX model; no .json beside it
    (tmp_path / "voice2.onnx").write_bytes(b"\x08\x07" + bytes(64))
    (tmp_path / "voice2.onnx.json").write_text("{\"audio\": {}}")
    return tmp_path


@pytest.mark.parametrize("args, shown", [
    (["run", "--llm-gguf", "missing.gguf"], "voxline: llm_gguf='missing.gguf': no such file"),
    (["run", "--llm-gguf", "notes.gguf"], "voxline: llm_gguf='notes.gguf': not a GGUF file"),
    (["run", "--stt-model", "empty"], "voxline: stt_model='empty': model.bin is missing"),
    (["run", "--language", "fr"], "voxline: language='fr': the Whisper model (the packaged tiny.en) is English-only"),
    (["run", "--tts-voice", "notes.gguf"], "voxline: tts_voice='notes.gguf': not an ONNX model"),
    (["run", "--tts-voice", "voice.onnx"], "voxline: tts_voice='voice.onnx': voice.onnx.json beside it is missing"),
    (["agent", "--bus", "kafka", "--kafka-bootstrap", "127.0.0.1:1", "--stt-model", "empty"],
     "voxline: stt_model='empty': model.bin is missing"),
    (["serve", "llm", "--llm-gguf", "notes.gguf"], "voxline: llm_gguf='notes.gguf': not a GGUF file"),
])
def test_a_bad_model_file_is_one_line_and_exit_2(args: list[str], shown: str, files: Path) -> None:
    """Through the real CLI: exit 2, one line naming the setting, before any model (or a bus) is touched."""
    done = voxline(args, files)
    assert done.returncode == 2, done
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(shown), done.stderr
    assert "ready" not in done.stdout


@pytest.mark.parametrize("values, shown", [
    ({"llm_gguf": "empty"}, "llm_gguf='empty': not a file"),
    ({"stt_model": "notes.gguf"}, "stt_model='notes.gguf': not a directory"),
    ({"tts_voice": "voice.onnx", "tts_voice_config": "nope.json"}, "tts_voice_config='nope.json': no such file"),
    ({"tts_voice": "voice2.onnx"}, "tts_voice='voice2.onnx': voice2.onnx.json beside it: not a Piper voice config"),
])
def test_each_wrong_file_is_named(values: dict[str, str], shown: str, files: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(files)
    with pytest.raises(ModelFileError) as caught:
        model_files.check(Settings(**values))
    assert str(caught.value).startswith(shown)


def test_another_stage_s_file_is_not_checked_by_a_service(files: Path) -> None:
    """`serve tts` loads only the voice: a bad llm_gguf is not its business."""
    model_files.check(Settings(llm_gguf=str(files / "notes.gguf")), stages=("stt", "tts"))


def test_remote_back_ends_take_names_not_files() -> None:
    model_files.check(Settings(stt="openai", stt_model="whisper-large-v3", language="de", llm="openai",
                               llm_gguf="", tts="openai", tts_voice="alloy"))


def test_a_multilingual_model_takes_another_language(tmp_path: Path) -> None:
    multi = whisper_dir(tmp_path / "base", 51865)
    english = whisper_dir(tmp_path / "base.en", 51864)
    model_files.check(Settings(stt_model=str(multi), language="fr"))
    model_files.check(Settings(stt_model=str(multi), language=""))  # detected per turn
    model_files.check(Settings(stt_model=str(english), language="en-US"))
    with pytest.raises(ModelFileError, match="is English-only"):
        model_files.check(Settings(stt_model=str(english), language="de"))


def test_a_whisper_directory_needs_its_tokenizer(tmp_path: Path) -> None:
    """Without tokenizer.json faster-whisper would fetch one from the hub at load."""
    model = whisper_dir(tmp_path / "m", 51865)
    (model / "tokenizer.json").unlink()
    with pytest.raises(ModelFileError, match="tokenizer.json is missing"):
        model_files.check(Settings(stt_model=str(model)))


def test_a_voice_config_beside_or_named(files: Path) -> None:
    good = files / "good.json"
    good.write_text("{\"audio\": {\"sample_rate\": 22050}}")
    assert model_files.check_piper_voice(str(files / "voice.onnx"), str(good)) == str(good)
    with pytest.raises(ModelFileError, match="tts_voice_config is set but tts_voice is the packaged voice"):
        model_files.check(Settings(tts_voice_config=str(good)))


@pytest.mark.parametrize("language, code", [("en", "en"), ("en-US", "en"), ("English", "en"), ("pt_BR", "pt"),
                                            ("", None), (" fr ", "fr")])
def test_the_language_as_whisper_takes_it(language: str, code: str | None) -> None:
    assert model_files.whisper_language(language) == code


def test_an_unknown_chat_format_is_refused_before_the_gguf_loads() -> None:
    from voxline.services.llm.llamacpp import LlamaCppLLM

    with pytest.raises(ValueError, match="llm_chat_format='nope': not a llama.cpp chat format"):
        LlamaCppLLM(path="/nonexistent.gguf", chat_format="nope")


@pytest.mark.parametrize("asked, served, refused", [("fr", "en", True), ("en-US", "en", False), ("", "fr", False),
                                                    ("fr", "fr", False), ("de", None, False)])
def test_the_stt_service_transcribes_in_its_own_language(asked: str, served: str | None, refused: bool) -> None:
    from voxline.http_errors import ApiError
    from voxline.modelserver.stt import _check_language

    if refused:
        with pytest.raises(ApiError, match="transcribes 'en' only"):
            _check_language(asked, served)
    else:
        _check_language(asked, served)

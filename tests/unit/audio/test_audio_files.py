"""`voxline call` reads whatever audio file it is given, and cuts it into questions at pauses."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest

from audio_helpers import dominant_hz, tone
from voxline.audio.decode import read_audio
from voxline.client.audio import RATE
from voxline.client.call import split_questions


def stereo_tone(seconds: float = 1.0, rate: int = 22_050) -> np.ndarray:
    """440 Hz in both channels, interleaved, as float in [-1, 1]."""
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.4 * np.sin(2 * np.pi * 440 * t)
    return np.stack([mono, mono], axis=1).reshape(-1)


def write_extensible_wav(path: Path, samples: np.ndarray, rate: int, bits: int, channels: int, float_: bool = False) -> None:
    """A WAV with a WAVE_FORMAT_EXTENSIBLE header (format tag 0xFFFE), as sox writes for
    more than two channels or more than 16 bits; Python's `wave` refuses it."""
    if float_:
        data = samples.astype("<f4").tobytes()
        sub_format = b"\x03\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"  # IEEE float GUID
    else:
        scaled = np.round(samples * (2 ** (bits - 1) - 1)).astype("<i4")
        data = b"".join(int(v).to_bytes(4, "little", signed=True)[: bits // 8] for v in scaled)
        sub_format = b"\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"  # PCM GUID
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits,
                      3 if channels == 2 else 4) + sub_format
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def write_with_pyav(path: Path, codec: str, samples: np.ndarray, rate: int) -> None:
    """Stereo float samples (interleaved) encoded into `path` by FFmpeg (MP3, FLAC...)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        fmt = stream.codec_context.codec.audio_formats[0].name
        pcm = samples.reshape(1, -1).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(pcm, format="flt", layout="stereo")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=fmt, layout="stereo", rate=rate)
        for f in resampler.resample(frame):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def assert_is_the_tone(samples: np.ndarray, seconds: float = 1.0) -> None:
    assert samples.dtype == np.int16
    assert abs(samples.size / RATE - seconds) < 0.1, samples.size / RATE
    assert abs(dominant_hz(samples[RATE // 10: RATE // 2], RATE) - 440) < 5
    assert np.abs(samples).max() > 8_000  # the level survived (0.4 of full scale)


@pytest.mark.parametrize(("bits", "float_"), [(16, False), (24, False), (32, True)])
def test_wave_format_extensible_wavs_load(tmp_path: Path, bits: int, float_: bool) -> None:
    path = tmp_path / "sox.wav"
    write_extensible_wav(path, stereo_tone(), 22_050, bits, 2, float_)
    assert_is_the_tone(read_audio(path))


@pytest.mark.parametrize(("codec", "name"), [("mp3", "q.mp3"), ("flac", "q.flac")])
def test_mp3_and_flac_load(tmp_path: Path, codec: str, name: str) -> None:
    path = tmp_path / name
    write_with_pyav(path, codec, stereo_tone(rate=44_100), 44_100)
    assert_is_the_tone(read_audio(path))


def test_a_file_that_is_not_audio_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "notes.wav"
    junk.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(64))
    with pytest.raises(ValueError, match="notes.wav"):
        read_audio(junk)
    with pytest.raises(ValueError, match="no such file"):
        read_audio(tmp_path / "missing.wav")


def test_a_file_over_the_length_bound_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.flac"
    write_with_pyav(path, "flac", stereo_tone(seconds=3.0, rate=16_000), 16_000)
    with pytest.raises(ValueError, match="longer than"):
        read_audio(path, max_s=1.0)


def test_questions_are_cut_at_long_pauses_only() -> None:
    def quiet(s: float) -> np.ndarray:
        return np.zeros(int(s * RATE), dtype=np.int16)

    q1, q2 = tone(seconds=0.8), tone(freq=600, seconds=0.6)
    audio = np.concatenate([quiet(0.3), q1, quiet(0.4), q1, quiet(1.5), q2, quiet(0.5)])
    pieces = split_questions(audio, min_gap_s=1.0)
    assert len(pieces) == 2  # the 0.4 s pause stays inside the first question
    assert sum(p.size for p in pieces) == audio.size  # nothing lost or doubled
    assert abs(dominant_hz(pieces[1], RATE) - 600) < 30  # the second question, not the first
    assert len(split_questions(audio, min_gap_s=0)) == 1
    assert split_questions(quiet(2.0)) == []

"""The caller's audio on its way to Whisper: what the codec, the decimation to 16 kHz and the
turn's cut do to it, measured in Whisper's own log-mel features.

Words are a poor gauge here: Whisper tiny.en's greedy decoder changes words for inaudible
changes of its input (README, WER), so these tests bound how far what reaches it moves from
the file, and that no speech is cut off.
"""

from __future__ import annotations

import numpy as np
import pytest

from voxline.agent.turns import SpeechEnded, TurnConfig, TurnDetector
from voxline.audio.opus import OpusDecoder, encode_frames
from voxline.audio.resample import Decimator3, resample_s16
from voxline.bench.voices import VOICES, Speaker

# Not benchmark questions (those are what the benchmarks measure).
SENTENCES = ("The fisherman mended his nets beside the harbour wall.", "Seven silver spoons lay on the table.")
ESPEAK = [v for v in VOICES if v[1] == "espeak"][:3]


@pytest.fixture(scope="module")
def utterances() -> list[np.ndarray]:
    """A few sentences in a few espeak-ng voices, 16 kHz."""
    speak = Speaker()
    return [np.frombuffer(speak(text, voice), dtype=np.int16) for text in SENTENCES for voice in ESPEAK]


@pytest.fixture(scope="module")
def features():  # type: ignore[no-untyped-def]
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor()


def mel_distance(features, reference: np.ndarray, heard: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """Mean |difference| of Whisper's normalised log-mel over the speech frames, `heard`
    aligned on `reference` first (the codec delays it by a few ms)."""
    ref = reference.astype(np.float32)
    got = heard.astype(np.float32)
    span = ref.size - 400
    lag = max(range(400), key=lambda k: float(np.dot(ref[:span], got[k:k + span])))
    got = got[lag:lag + ref.size]
    a, b = features(ref / 32768.0), features(got / 32768.0)
    n = min(a.shape[1], b.shape[1])
    a, b = a[:, :n], b[:, :n]
    speech = a.max(axis=0) > a.max() - 1.0
    return float(np.abs(a - b)[:, speech].mean())


def over_opus(pcm16k: np.ndarray, max_playback_rate: int, bitrate: int = 32_000) -> np.ndarray:
    """`pcm16k` as a caller sends it (48 kHz, Opus "voip", 32 kbit/s unless asked) and the server decodes it (16 kHz)."""
    at48 = np.frombuffer(resample_s16(pcm16k.tobytes(), 16_000, 48_000), dtype=np.int16)
    payloads = encode_frames(np.concatenate([at48, np.zeros(9_600, dtype=np.int16)]), bitrate, "voip",
                             max_playback_rate)
    decoder = OpusDecoder(16_000)
    return np.frombuffer(b"".join(decoder.decode(p) for p in payloads), dtype=np.int16)


def test_a_wideband_caller_reaches_whisper_closer_to_the_file(utterances, features) -> None:  # type: ignore[no-untyped-def]
    """At 32 kbit/s a fullband encoder spends part of its bits above 8 kHz, which Whisper never
    hears; asked for wideband (the answer's `maxplaybackrate=16000`) it spends them all below."""
    fullband = np.mean([mel_distance(features, u, over_opus(u, 48_000)) for u in utterances])
    wideband = np.mean([mel_distance(features, u, over_opus(u, 16_000)) for u in utterances])
    assert wideband < 0.85 * fullband, (wideband, fullband)
    assert wideband < 0.045, wideband


def test_the_bitrate_the_answer_asks_brings_whisper_features_near_the_file(utterances, features) -> None:  # type: ignore[no-untyped-def]
    """Wideband at 32 kbit/s still moved Whisper's features 0.04 from the file's, and the turn's
    WER 1-2.5 points over the same cut uncoded (36 and 40 utterances x 8 phases); at the 64 the
    answer asks they are about half as far and the WER as the uncoded cut's."""
    from voxline.config import Settings

    asked = Settings().rtc_opus_max_bitrate
    at32 = np.mean([mel_distance(features, u, over_opus(u, 16_000)) for u in utterances])
    now = np.mean([mel_distance(features, u, over_opus(u, 16_000, asked)) for u in utterances])
    assert now < 0.7 * at32 and now < 0.03, (now, at32)


def test_the_fallback_decimator_keeps_whisper_features_as_soxr_does(utterances, features) -> None:  # type: ignore[no-untyped-def]
    """48 -> 16 kHz without libopus's own 16 kHz output: the steady decimator is within a few
    thousandths of soxr's HQ resampler in Whisper's features (63 taps cut at 7 kHz: 0.011)."""
    for u in utterances[:3]:
        at48 = np.frombuffer(resample_s16(u.tobytes(), 16_000, 48_000), dtype=np.int16)
        soxr = np.frombuffer(resample_s16(at48.tobytes(), 48_000, 16_000), dtype=np.int16)
        assert mel_distance(features, u, soxr) < 0.003
        assert mel_distance(features, u, Decimator3().push(at48)) < 0.006


@pytest.mark.parametrize("config", [
    # The defaults speculate at 64 ms and keep up to 96 while the silence still holds sound.
    pytest.param(TurnConfig(), id="defaults"),
    pytest.param(TurnConfig(pause_ms=96), id="96 ms kept"),
])
def test_the_turn_holds_the_whole_utterance_heard_over_opus(utterances, vad_model, config) -> None:  # type: ignore[no-untyped-def]
    """Pre-roll and trailing trim: every sample above -50 dBFS of what the server decoded is
    inside the audio the ended turn hands STT, for every voice."""
    lead = np.zeros(4_800, dtype=np.int16)  # the caller's 0.3 s of silence before speaking
    for u in utterances:
        heard = over_opus(np.concatenate([lead, u, np.zeros(16_000, dtype=np.int16)]), 16_000)
        stream, detector = vad_model.stream(), TurnDetector(config)
        ended = []
        pcm = heard.tobytes()
        for i in range(0, len(pcm), 640):  # 20 ms packets, as they arrive
            for raw, prob in stream.process(pcm[i:i + 640]):
                ended += [e for e in detector.push(raw, prob) if isinstance(e, SpeechEnded)]
        assert len(ended) == 1, f"the utterance ended {len(ended)} turns"
        at = pcm.find(ended[0].pcm)
        assert at >= 0 and at % 2 == 0
        start, end = at // 2, (at + len(ended[0].pcm)) // 2
        loud = np.flatnonzero(np.abs(heard.astype(np.int32)) > 100)
        assert start <= loud[0] and loud[-1] < end, (start, end, loud[0], loud[-1])


def test_the_offline_replay_cuts_one_whole_turn_at_each_phase_of_the_packets(utterances, vad_model) -> None:  # type: ignore[no-untyped-def]
    """`voxline bench --wer`'s replay: the server's decoder, VAD and TurnDetector over each of
    the 8 phases of 20 ms packets against 32 ms windows; every phase's turn holds the utterance."""
    from types import SimpleNamespace

    from voxline.bench.wer_replay import PHASES, caller_stream, replay

    heard: list[bytes] = []

    def transcribe(pcm: bytes) -> str:
        heard.append(pcm)
        return f"turn {len(heard)}"

    u = utterances[0]
    [row] = replay([SimpleNamespace(pcm16k=u.tobytes())], transcribe, vad_model, TurnConfig())
    assert row["codec"] == "turn 1" and row["splits"] == 0
    assert row["cuts"] == [f"turn {k}" for k in range(2, 2 + PHASES)]
    starts = set()
    for phase, cut in enumerate(heard[1:]):
        stream = caller_stream(u.tobytes(), phase)
        assert heard[0] == caller_stream(u.tobytes(), 0) and len(stream) == len(heard[0]) + 640 * phase
        at = stream.find(cut)
        loud = np.flatnonzero(np.abs(np.frombuffer(stream, dtype=np.int16).astype(np.int32)) > 100)
        assert 0 <= at // 2 <= loud[0] and loud[-1] < (at + len(cut)) // 2
        starts.add((loud[0] - at // 2) % 512)
    assert len(starts) > 1  # the phases cut the turn at different places in the speech

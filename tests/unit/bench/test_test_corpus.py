"""The spoken tests' corpus: its own sentences (no benchmark's), many voices, a noise floor, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from sentences import QUESTIONS, bench_sentence_in, every_sentence
from spoken import NOISE_FLOOR_DBFS, Corpus, level_dbfs, seed_of, voice_for
from voxline.bench import answers_corpus, latency, turns_corpus, wer
from voxline.bench.voices import VOICES, noise_floor, over_floor, voice_named


def test_no_test_sentence_is_a_benchmark_question() -> None:
    said = every_sentence()
    assert len(set(said)) >= 20  # more than a handful
    overlap = {text: bench_sentence_in(text) for text in said if bench_sentence_in(text) is not None}
    assert not overlap, overlap


@pytest.mark.parametrize("bench_text", [wer.TEXTS[4], next(iter(latency.QUESTIONS)), turns_corpus.QUESTIONS[2],
                                        turns_corpus.LONG[0], answers_corpus.ITEMS[0].turns[0].say,
                                        answers_corpus.ITEMS[-1].turns[1].say])
def test_the_speech_fixture_refuses_every_benchmarks_sentences(bench_text: str) -> None:
    corpus = Corpus(None)
    with pytest.raises(ValueError, match="benchmark"):
        corpus(bench_text, VOICES[0])
    with pytest.raises(ValueError, match="benchmark"):  # said inside a longer text, in other case
        corpus(f"Okay. {bench_text.upper()} Thanks.", VOICES[0])


def test_each_question_is_heard_by_its_own_words() -> None:
    for q in QUESTIONS:
        assert q.heard and q.heard <= set(q.text.lower().replace("?", "").split()), q
        assert q.answer, q


def test_the_voice_of_a_test_is_fixed_by_its_name_and_the_tests_use_them_all() -> None:
    assert voice_for("tests/integration/test_x.py::test_y") == voice_for("tests/integration/test_x.py::test_y")
    picked = {voice_for(f"tests/integration/test_x.py::test_{i}")[0] for i in range(64)}
    assert picked == {v[0] for v in VOICES}
    engines = {v[1] for v in VOICES}
    assert engines == {"espeak", "piper"} and len({v[0] for v in VOICES if v[1] == "piper"}) >= 2  # two speeds


def test_the_noise_floor_is_seeded_pink_and_at_its_level() -> None:
    a, b, c = noise_floor(48_000, -55.0, 1), noise_floor(48_000, -55.0, 1), noise_floor(48_000, -55.0, 2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs(level_dbfs(a) - -55.0) < 0.5
    power = np.abs(np.fft.rfft(a.astype(np.float64))) ** 2
    low, high = power[100:1000].mean(), power[10_000:20_000].mean()  # ~ 100-1000 Hz, 10-20 kHz at 48 kHz / 1 s
    assert low > 10 * high  # pink: most power low, as a room's
    assert int(np.abs(a).max()) < 500  # under the caller's "sound" threshold: it is never taken for speech


def test_speech_is_never_digitally_silent_and_the_same_each_time() -> None:
    corpus = Corpus(None)
    text = QUESTIONS[0].text
    pcm = corpus(text, VOICES[0])
    assert pcm == Corpus(None)(text, VOICES[0])  # made again, the same samples
    samples = np.frombuffer(pcm, dtype=np.int16)
    windows = samples[: samples.size // 320 * 320].reshape(-1, 320)  # 20 ms
    assert (np.abs(windows).max(axis=1) > 0).all()  # espeak's own silences are under the floor
    assert over_floor(bytes(640), NOISE_FLOOR_DBFS, seed_of("a")) != bytes(640)


@pytest.mark.models
def test_piper_in_the_corpus_says_a_text_the_same_way_twice(tts) -> None:  # type: ignore[no-untyped-def]
    """Piper draws noise in its model on every call; the corpus turns it off, or a failing
    test would not hear the same audio when it is run again."""
    piper = voice_named("piper joe 0.8 (fast)")
    first, again = Corpus(None), Corpus(None)
    first.use_tts(tts)
    again.use_tts(tts)
    assert first(QUESTIONS[1].text, piper) == again(QUESTIONS[1].text, piper)

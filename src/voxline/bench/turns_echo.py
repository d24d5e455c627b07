"""Offline echo measurement: the agent's reply looped back, with and without a caller over it.

No network: the reply goes through what a call does to it (Opus to the caller, their
speaker-to-microphone path: delay, gain, a phone-line band-pass; Opus back), then through one
of three front ends before Silero VAD and the turn detector:
  none     the input as it came;
  voxline  `voxline.audio.echo.EchoCanceller` (correlation-found lag, fitted echo power, mute);
  speex    speexdsp's MDF echo canceller with its residual-echo suppressor (ctypes on
           Debian's libspeexdsp1, if installed), fed the same playout-aligned reference.
For each it counts false speech starts on echo alone, ERLE, and whether (and how late) a real
interruption over the echo is still detected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from dataclasses import dataclass

import numpy as np

from voxline.agent.turns import SpeechStarted, TurnConfig, TurnDetector
from voxline.audio.echo import BLOCK, RATE, EchoCanceller
from voxline.audio.opus import OpusDecoder, encode_frames
from voxline.audio.resample import resample_s16
from voxline.services.vad import SileroModel


def through_opus(pcm16k: np.ndarray) -> np.ndarray:
    """16 kHz audio sent as 48 kHz Opus and decoded back to 16 kHz (one hop of a call)."""
    at48 = np.frombuffer(resample_s16(pcm16k.astype(np.int16).tobytes(), RATE, 48_000), dtype=np.int16)
    decoder = OpusDecoder(RATE)
    return np.frombuffer(b"".join(decoder.decode(p) for p in encode_frames(at48)), dtype=np.int16)[: pcm16k.size]


def band_pass(x: np.ndarray, low: float = 300.0, high: float = 3_400.0) -> np.ndarray:
    """A phone line's band (FFT mask with soft edges)."""
    spec = np.fft.rfft(x.astype(np.float64))
    f = np.fft.rfftfreq(x.size, 1 / RATE)
    mask = np.clip((f - low * 0.7) / (low * 0.3), 0, 1) * np.clip((high * 1.2 - f) / (high * 0.2), 0, 1)
    return np.fft.irfft(spec * mask, x.size)


MOVE_STEPS, MOVE_EVERY_S = 3, 1.0  # a moving delay moves in 3 steps, one a second (as `turns_caller`'s)


def echo_of(reply: np.ndarray, delay_ms: float, gain_db: float, phone: bool = True,
            move_ms: float = 0.0) -> np.ndarray:
    """What the caller's microphone sends back of `reply` (16 kHz), as the server receives it;
    with `move_ms`, a delay that moves by that much during the reply (a jitter buffer adapting)."""
    heard = through_opus(reply).astype(np.float64)
    if phone:
        heard = band_pass(heard)
    heard *= 10 ** (gain_db / 20)
    n = np.arange(heard.size + int((delay_ms + max(0.0, move_ms)) * RATE / 1000))
    steps = np.minimum(MOVE_STEPS, n // int(MOVE_EVERY_S * RATE))
    source = n - ((delay_ms + move_ms * steps / MOVE_STEPS) * RATE / 1000).astype(int)
    inside = (source >= 0) & (source < heard.size)
    delayed = np.where(inside, heard[np.clip(source, 0, heard.size - 1)], 0.0)
    return through_opus(np.clip(delayed, -32768, 32767).astype(np.int16))


class SpeexAec:
    """speexdsp's echo canceller and preprocessor, called through ctypes (for comparison only)."""

    ECHO_STATE = 24  # SPEEX_PREPROCESS_SET_ECHO_STATE
    SAMPLING_RATE = 24  # SPEEX_ECHO_SET_SAMPLING_RATE

    def __init__(self, tail_ms: int = 500) -> None:
        name = ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1"
        lib = ctypes.CDLL(name)
        lib.speex_echo_state_init.restype = ctypes.c_void_p
        lib.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.speex_echo_cancellation.argtypes = [ctypes.c_void_p] + [ctypes.c_void_p] * 3
        lib.speex_echo_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        lib.speex_preprocess_state_init.restype = ctypes.c_void_p
        lib.speex_preprocess_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.speex_preprocess_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        lib.speex_preprocess_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.lib = lib
        self.echo = lib.speex_echo_state_init(BLOCK, tail_ms * RATE // 1000)
        rate = ctypes.c_int(RATE)
        lib.speex_echo_ctl(self.echo, self.SAMPLING_RATE, ctypes.byref(rate))
        self.pre = lib.speex_preprocess_state_init(BLOCK, RATE)
        lib.speex_preprocess_ctl(self.pre, self.ECHO_STATE, ctypes.c_void_p(self.echo))

    def block(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        m = np.ascontiguousarray(mic, dtype=np.int16)
        r = np.ascontiguousarray(ref, dtype=np.int16)
        out = np.zeros(BLOCK, dtype=np.int16)
        self.lib.speex_echo_cancellation(self.echo, m.ctypes.data, r.ctypes.data, out.ctypes.data)
        self.lib.speex_preprocess_run(self.pre, out.ctypes.data)
        return out


@dataclass
class EchoCase:
    delay_ms: float
    gain_db: float
    caller_at_s: float | None = None  # a real interruption starts here (seconds into the reply)
    move_ms: float = 0.0  # the echo's delay moves by this much during the reply (`echo_of`)


@dataclass
class EchoOutcome:
    false_starts: int  # speech starts before the caller spoke (all of them, if none did)
    detected_ms: float | None  # a real interruption: its start to the detector's speech start
    erle_db: float  # input to output energy over the echo alone
    cpu_ms_per_s: float  # front end's CPU per second of audio


def run_case(vad: SileroModel, reply: np.ndarray, caller: np.ndarray, case: EchoCase, method: str) -> EchoOutcome:
    echo = echo_of(reply, case.delay_ms, case.gain_db, move_ms=case.move_ms)
    mic = echo.astype(np.float64)
    start = None
    if case.caller_at_s is not None:
        start = int(case.caller_at_s * RATE)
        mic = np.concatenate([mic, np.zeros(max(0, start + caller.size - mic.size))])
        mic[start:start + caller.size] += caller
    mic_i = np.clip(mic, -32768, 32767).astype(np.int16)
    mic_i = np.concatenate([mic_i, np.zeros((-mic_i.size) % BLOCK, dtype=np.int16)])
    t0 = 1_000.0  # the reply was sent at t0 and plays from there (sent faster than it plays)
    canceller = EchoCanceller() if method == "voxline" else None
    speex = SpeexAec() if method == "speex" else None
    if canceller is not None:
        canceller.feed_reference(reply.tobytes(), t0)
    ref = np.concatenate([reply, np.zeros(max(0, mic_i.size - reply.size), dtype=np.int16)])[: mic_i.size]
    stream, detector = vad.stream(), TurnDetector(TurnConfig(min_speech_ms=160))
    starts: list[float] = []
    cpu = 0.0
    e_in = e_out = 0.0
    for i in range(0, mic_i.size, BLOCK):
        x = mic_i[i:i + BLOCK]
        began = time.process_time()
        if canceller is not None:
            y = np.frombuffer(canceller.process(x.tobytes(), t0 + (i + BLOCK) / RATE), dtype=np.int16)
        elif speex is not None:
            y = speex.block(x, ref[i:i + BLOCK])
        else:
            y = x
        cpu += time.process_time() - began
        if start is None or i + BLOCK <= start:
            e_in += float(x.astype(np.float64) @ x)
            e_out += float(y.astype(np.float64) @ y)
        for _, prob in stream.process(y.tobytes()):
            for ev in detector.push(b"", prob):
                if isinstance(ev, SpeechStarted):
                    starts.append(ev.at_ms / 1000)
    begin = None if start is None else start / RATE
    false = [s for s in starts if begin is None or s < begin - 0.05]
    after = [s for s in starts if begin is not None and s >= begin - 0.05]
    detected = (after[0] - begin) * 1000 if after and begin is not None else None
    return EchoOutcome(len(false), detected, 10 * np.log10((e_in + 1) / (e_out + 1)),
                       cpu * 1000 / (mic_i.size / RATE))


def speex_available() -> bool:
    try:
        SpeexAec()
    except OSError:
        return False
    return True


CASES = (EchoCase(120, -10), EchoCase(120, -20), EchoCase(300, -6), EchoCase(20, -6),
         EchoCase(120, -10, 2.5), EchoCase(300, -6, 2.5), EchoCase(120, -20, 2.5))


def compare(vad: SileroModel, reply: np.ndarray, caller: np.ndarray,
            cases: tuple[EchoCase, ...] = CASES) -> list[dict[str, object]]:
    """Every case through every front end available here."""
    methods = ["none", "voxline"] + (["speex"] if speex_available() else [])
    rows: list[dict[str, object]] = []
    for case in cases:
        for method in methods:
            o = run_case(vad, reply, caller, case, method)
            rows.append({"delay_ms": case.delay_ms, "gain_db": case.gain_db, "caller": case.caller_at_s is not None,
                         "method": method, "false_starts": o.false_starts, "detected_ms": o.detected_ms,
                         "erle_db": round(float(o.erle_db), 1), "cpu_ms_per_s": round(o.cpu_ms_per_s, 1)})
    return rows


def compare_text(rows: list[dict[str, object]]) -> str:
    lines = ["| echo | caller over it | front end | false speech starts | interruption detected | ERLE | CPU |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        detected = r["detected_ms"]
        seen = "-" if not r["caller"] else "missed" if detected is None else f"+{max(0.0, float(str(detected))):.0f} ms"
        lines.append(f"| {r['delay_ms']:.0f} ms, {r['gain_db']:.0f} dB | {'yes' if r['caller'] else 'no'} | {r['method']} "
                     f"| {r['false_starts']} | {seen} | {r['erle_db']} dB | {r['cpu_ms_per_s']} ms/s |")
    return "\n".join(lines)


async def _main() -> None:
    from voxline.bench.turns_corpus import espeak
    from voxline.services.tts.piper import PiperTTS

    tts = PiperTTS()
    pcm = b"".join([c async for c in tts.synthesize(
        "The capital of France is Paris. It is a large city on the river Seine, "
        "famous for its museums, its food and the Eiffel Tower.")])
    reply = np.frombuffer(resample_s16(pcm, tts.sample_rate, RATE), dtype=np.int16)
    caller = np.frombuffer(resample_s16(espeak("Wait, stop. I have a different question.").tobytes(),
                                        48_000, RATE), dtype=np.int16)
    print(compare_text(compare(SileroModel(), reply, caller)))


if __name__ == "__main__":
    import asyncio

    asyncio.run(_main())

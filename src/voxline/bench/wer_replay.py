"""The call path replayed offline: which stage changed what Whisper heard of each utterance.

`voxline bench --wer` sets the server's transcript beside the file's. Between the two lie the
caller's codec and the turn's cut, replayed here with the server's own parts (real libopus,
its decoder straight to 16 kHz, Silero, the TurnDetector at the server's settings):

- codec: the file as a caller sends it (`LEAD_S` of silence, 48 kHz, Opus `voip` at the
  bitrate and band the answer asks), decoded whole;
- cut: the turn the VAD and the TurnDetector cut from that stream, at each of the `PHASES`
  phases of the caller's 20 ms packets against the VAD's 32 ms windows (which one a call
  gets is chance: the packets sent before the caller spoke).

Whisper tiny.en changes words for changes of its input nobody hears, so one phase is one
draw: the cut's WER is the mean over all of them, and a live call is one more draw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from voxline.agent.turns import SpeechEnded, TurnConfig, TurnDetector
from voxline.audio.opus import OpusDecoder, encode_frames, silence_frame
from voxline.audio.resample import resample_s16

LEAD_S = 0.3  # the bench's callers say nothing for this long before the question
PHASES = 8  # 20 ms packets against 32 ms windows: 320 * k samples mod 512 takes 8 values
PACKET_BYTES = 640  # 20 ms at 16 kHz s16
MIC_APPLICATION = "voip"  # what browsers code a microphone with (voxline.client.audio)


def turn_config(settings: Any) -> TurnConfig:
    """The TurnDetector's settings that decide the turn's audio, as the orchestrator sets them."""
    return TurnConfig(threshold=settings.vad_threshold, min_speech_ms=settings.min_speech_ms,
                      pause_ms=settings.speculation_pause_ms, trailing_ms=settings.turn_tail_ms,
                      tail_level_dbfs=settings.turn_tail_level_dbfs, end_silence_ms=settings.end_of_turn_silence_ms)


def caller_stream(pcm16k: bytes, phase: int = 0, bitrate: int = 32_000, max_playback_rate: int = 16_000) -> bytes:
    """What the server decodes of a caller saying `pcm16k`: `phase` silent packets, then the
    caller's lead of silence and the utterance (Opus `voip`), then a second of silence."""
    at48 = np.frombuffer(resample_s16(pcm16k, 16_000, 48_000), dtype=np.int16)
    said = np.concatenate([np.zeros(int(LEAD_S * 48_000), dtype=np.int16), at48])
    payloads = encode_frames(said, bitrate, MIC_APPLICATION, max_playback_rate)
    silent = silence_frame(MIC_APPLICATION)
    decoder = OpusDecoder(16_000)
    packets = [silent] * phase + payloads + [silent] * 50
    return b"".join(decoder.decode(p) for p in packets)


def turn_cuts(stream: bytes, vad: Any, config: TurnConfig) -> list[bytes]:
    """The audio of each turn the server's VAD and TurnDetector end in `stream` (no cues:
    the turn ends after `end_silence_ms`; the turn's audio does not depend on when)."""
    vad_stream, detector = vad.stream(), TurnDetector(config)
    ended: list[bytes] = []
    for i in range(0, len(stream), PACKET_BYTES):  # packet by packet, as they arrive
        for window, prob in vad_stream.process(stream[i:i + PACKET_BYTES]):
            ended += [e.pcm for e in detector.push(window, prob) if isinstance(e, SpeechEnded)]
    return ended


def replay(utterances: Sequence[Any], transcribe: Callable[[bytes], str], vad: Any, config: TurnConfig,
           bitrate: int = 32_000, max_playback_rate: int = 16_000, phases: int = PHASES) -> list[dict[str, Any]]:
    """Per utterance: the whole decoded stream's transcript (`codec`), and each phase's cut
    (`cuts`: the words of its turns, joined; `splits`: the phases that ended other than one turn)."""
    out = []
    for u in utterances:
        codec = transcribe(caller_stream(u.pcm16k, 0, bitrate, max_playback_rate))
        cuts, splits = [], 0
        for phase in range(phases):
            turns = turn_cuts(caller_stream(u.pcm16k, phase, bitrate, max_playback_rate), vad, config)
            splits += len(turns) != 1
            cuts.append(" ".join(t for t in (transcribe(pcm) for pcm in turns) if t))
        out.append({"codec": codec, "cuts": cuts, "splits": splits})
    return out

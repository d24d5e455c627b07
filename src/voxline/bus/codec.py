"""Wire formats: a compact binary frame for audio, JSON objects for everything else.

The JSON messages themselves (types, fields, version) are defined in `bus.messages`;
this module only frames them.

Audio frame (network byte order):

    magic "VX" | version u8 | kind u8 | seq u32 | turn u32 | ts f64 | rate u32 | sid_len u16
    | session_id (ascii) | PCM s16le mono

`kind` is AUDIO (PCM follows), CLEAR (drop queued playback of turns <= `turn`; barge-in),
END (the agent's reply for `turn` is complete), PAUSE (hold `turn`'s playback where it is:
the caller made a sound that may be a backchannel) or RESUME (go on from there). `ts` is the capture (audio.in) or synthesis
(audio.out) wall-clock time in seconds; `seq` lets a consumer drop replays.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

MAGIC = b"VX"
VERSION = 1
_HEADER = struct.Struct("!2sBBIIdIH")
MAX_JSON_BYTES = 1_000_000
MIN_RATE, MAX_RATE = 8_000, 96_000


class CodecError(ValueError):
    """A message that is not of the expected shape."""


class AudioKind(IntEnum):
    AUDIO = 0
    CLEAR = 1
    END = 2
    PAUSE = 3
    RESUME = 4


@dataclass(frozen=True, slots=True)
class AudioMessage:
    session_id: str
    seq: int
    pcm: bytes = b""
    sample_rate: int = 16_000
    ts: float = 0.0
    kind: AudioKind = AudioKind.AUDIO
    turn: int = 0

    def encode(self) -> bytes:
        sid = self.session_id.encode("ascii")
        header = _HEADER.pack(MAGIC, VERSION, int(self.kind), self.seq & 0xFFFFFFFF,
                              self.turn & 0xFFFFFFFF, self.ts, self.sample_rate, len(sid))
        return header + sid + self.pcm

    @classmethod
    def decode(cls, data: bytes) -> AudioMessage:
        if len(data) < _HEADER.size:
            raise CodecError("audio message shorter than its header")
        magic, version, kind, seq, turn, ts, rate, sid_len = _HEADER.unpack_from(data)
        if magic != MAGIC or version != VERSION:
            raise CodecError("not a voxline audio message")
        end = _HEADER.size + sid_len
        if len(data) < end or (len(data) - end) % 2:
            raise CodecError("truncated audio message")
        if kind == AudioKind.AUDIO and not MIN_RATE <= rate <= MAX_RATE:
            # A bogus rate would make the playout resampler allocate without bound.
            raise CodecError(f"sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
        try:
            kind_ = AudioKind(kind)
            sid = data[_HEADER.size:end].decode("ascii")
        except (ValueError, UnicodeDecodeError) as exc:
            raise CodecError(str(exc)) from exc
        return cls(sid, seq, bytes(data[end:]), rate, ts, kind_, turn)


def encode_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def decode_json(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_JSON_BYTES:
        raise CodecError("JSON message too large")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting: RecursionError
        raise CodecError(f"bad JSON: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise CodecError("JSON message must be an object with a string 'type'")
    return obj

"""A stand-in for an aiortc receiver's decoder queue that decodes in the event loop.

aiortc decodes each received frame in a thread per receiver and hands it back with a new
Future; at a hundred callers those thread hand-offs cost more than the decoding itself.
`voxline.rtc.hooks.decode_inline` puts this queue in the receiver's place. It carries the
audio of calls that do not take the direct path (`voxline.rtc.receive`): non-Opus codecs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import av
import numpy as np

from voxline.audio.opus import OpusDecoder

log = logging.getLogger(__name__)


class InlineDecoderQueue:
    """Stands in for an aiortc receiver's decoder queue (a `queue.Queue` its thread reads).

    The receiver puts each complete frame here from the event loop; it is decoded at once and
    handed to `on_pcm`. aiortc's decoder thread, which reads this queue, gets nothing until
    the receiver stops (`put(None)`): then it ends the track as it always does.
    """

    def __init__(self, on_pcm: Callable[[bytes, int], None], rate: int) -> None:
        self.on_pcm = on_pcm
        self.rate = rate
        self._opus: OpusDecoder | None = None  # made at the first Opus frame: most go the direct way
        self._other: tuple[str, Any, av.AudioResampler] | None = None  # non-Opus codec, rare
        self._ended = threading.Event()
        self.errors = 0

    def put(self, item: Any) -> None:
        if item is None:
            self._ended.set()
            return
        codec, encoded = item
        try:
            if codec.name.lower() == "opus":
                if self._opus is None:
                    self._opus = OpusDecoder(self.rate)
                pcm = self._opus.decode(encoded.data)
            else:
                pcm = self._decode_other(codec, encoded)
            if pcm:
                self.on_pcm(pcm, encoded.timestamp)
        except Exception:  # noqa: BLE001 - a bad frame is dropped; it must not end aiortc's transport loop
            self.errors += 1
            if self.errors in (1, 100) or self.errors % 10_000 == 0:
                log.warning("dropped a received audio frame that could not be handled (%d so far)", self.errors,
                            exc_info=True)

    def get(self) -> None:
        self._ended.wait()
        return None

    def _decode_other(self, codec: Any, encoded: Any) -> bytes:
        """PCMU/PCMA and the like: aiortc's own decoder, then mono at our rate."""
        from aiortc.codecs import get_decoder

        if self._other is None or self._other[0] != codec.name:
            self._other = (codec.name, get_decoder(codec),
                           av.AudioResampler(format="s16", layout="mono", rate=self.rate))
        _, decoder, resampler = self._other
        out = []
        for frame in decoder.decode(encoded):
            if not isinstance(frame, av.AudioFrame):
                continue  # an audio decoder gives audio frames
            out += [np.asarray(f.to_ndarray()).reshape(-1).tobytes() for f in resampler.resample(frame)]
        return b"".join(out)

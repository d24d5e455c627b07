"""Logical topic names. Back-ends add the configured prefix (`voxline.audio.in`, ...)."""

from __future__ import annotations

from enum import Enum


class Topic(str, Enum):
    AUDIO_IN = "audio.in"  # media -> agent: caller PCM, binary AudioMessage
    AUDIO_OUT = "audio.out"  # agent -> media: reply PCM, clear and end markers
    CONTROL = "control"  # media -> agent: session start/end, listening, playback done (JSON)
    EVENTS = "events"  # agent -> media/page: transcript, state, log, turn.metrics (JSON)
    LOGS = "logs"  # pipeline log lines (JSON), for log shipping
    METRICS = "metrics"  # per-turn metrics (JSON), for analytics


TOPICS: tuple[Topic, ...] = tuple(Topic)

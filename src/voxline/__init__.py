"""voxline: a real-time voice agent server (WHIP/WebRTC in, STT -> LLM -> TTS, voice out)."""

__version__ = "0.1.0"

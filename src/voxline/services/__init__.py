"""Model services: STT, LLM, TTS and VAD back-ends behind small async interfaces."""

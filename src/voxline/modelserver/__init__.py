"""`voxline serve stt|llm|tts`: an embedded back-end as an OpenAI-compatible HTTP service."""

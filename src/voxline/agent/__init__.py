"""The agent: per-session turn-taking (sans-I/O) and the asyncio orchestrator that runs it."""

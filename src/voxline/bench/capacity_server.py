"""A voxline server for the capacity benchmark: everything real except the three models
(or, with `--real-models`, everything real: the embedded models `voxline run` loads).

Builds the same parts as `voxline run` (MemoryBus, MediaServer, Orchestrator, real Silero
VAD, real WebRTC, real agent), but the STT, LLM and TTS are the FIXED-RESPONSE BACK-ENDS of
`voxline.bench.fixed_backends`, which exist only for this benchmark. Run as its own process
so that its CPU and memory can be measured apart from the callers' (`voxline bench --sessions
N` starts it):

    .venv/bin/python -m voxline.bench.capacity_server --port 8101 --max-sessions 120
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from voxline.agent.models import Models
from voxline.bench.fixed_backends import LABEL, FixedLLM, FixedSTT, FixedTTS
from voxline.bus.memory import MemoryBus
from voxline.config import Settings
from voxline.logs import setup_logging
from voxline.media.app import create_app
from voxline.media.server import MediaServer
from voxline.processes import serve_http, start_agent
from voxline.services.threads import ModelThread
from voxline.services.vad import SileroModel


async def serve(settings: Settings, stt_delay_s: float, real_models: bool = False) -> None:
    """Serve until SIGINT/SIGTERM."""
    bus = MemoryBus()
    await bus.start()
    fixed = None if real_models else Models(
        FixedSTT(delay_s=stt_delay_s), FixedLLM(), FixedTTS(), SileroModel(), ModelThread("vad", shares_cores=False),
        vad_in_thread=settings.vad_in_thread, vad_batch_ms=settings.vad_batch_ms)
    orchestrator, models = await start_agent(settings, bus, fixed)
    media = MediaServer(settings, bus)
    await media.start()
    runner = await serve_http(create_app(media, settings), settings.host, settings.port)
    if real_models:
        print(f"*** real models: {models.stt.name}, {models.llm.name}, {models.tts.name} ***", flush=True)
    else:
        print(f"*** {LABEL}: STT, LLM and TTS give fixed answers; VAD, WebRTC, bus and agent are real ***",
              flush=True)
    print(f"capacity server ready on http://{settings.host}:{settings.port}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await media.stop()
        await orchestrator.stop()
        await models.close()
        await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=f"voxline with {LABEL}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--max-sessions", type=int, default=200)
    parser.add_argument("--session-create-rate-per-min", type=int, default=100_000)
    parser.add_argument("--stt-delay-s", type=float, default=0.3)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--real-models", action="store_true", help="the embedded models `voxline run` loads")
    args = parser.parse_args()
    # Every benchmark caller comes from this machine's one address: the per-address cap is the session cap.
    settings = Settings.from_env(host=args.host, port=args.port, max_sessions=args.max_sessions,
                                 max_sessions_per_client=args.max_sessions,
                                 session_create_rate_per_min=args.session_create_rate_per_min,
                                 log_level=args.log_level, log_format="text")
    setup_logging(settings.log_level, settings.log_format)
    asyncio.run(serve(settings, args.stt_delay_s, args.real_models))


if __name__ == "__main__":
    main()

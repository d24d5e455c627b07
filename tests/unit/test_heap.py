"""A process that starts serving takes its start-up heap out of the garbage collector's sight."""

from __future__ import annotations

import gc

from aiohttp import web

from voxline.bench.system import free_port
from voxline.processes import serve_http


async def test_serving_freezes_what_was_built_to_start() -> None:
    gc.unfreeze()
    built = [object() for _ in range(10)]  # noqa: F841 - alive at start: frozen
    runner = await serve_http(web.Application(), "127.0.0.1", free_port())
    try:
        assert gc.get_freeze_count() > 1_000
    finally:
        await runner.cleanup()
        gc.unfreeze()  # this test process goes on making and dropping servers

"""What an operator's load balancer and rollout see: readiness when full, and draining on SIGTERM."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.integration.test_http_api import make_offer, post_offer


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.mark.parametrize("media_server", [{"max_sessions": 1}], indirect=True)
async def test_readyz_is_503_while_full_and_ready_again_when_a_session_ends(media_server, http) -> None:
    async with http.get(f"{media_server.url}/readyz") as resp:
        assert resp.status == 200
        assert (await resp.json())["max_sessions"] == 1
    sdp, pc = await make_offer()
    created = await post_offer(http, media_server.url, sdp)
    assert created.status == 201
    async with http.get(f"{media_server.url}/readyz") as resp:  # full: out of the rotation
        assert resp.status == 503
        assert (await resp.json())["error"] == "full"
        assert resp.headers["Retry-After"]
    async with http.get(f"{media_server.url}/healthz") as resp:  # alive all the same: no restart
        assert resp.status == 200
    async with http.delete(f"{media_server.url}{created.headers['Location']}") as resp:
        assert resp.status == 200
    async with http.get(f"{media_server.url}/readyz") as resp:
        assert resp.status == 200
    await pc.close()

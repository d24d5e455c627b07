"""Limits that a hostile client cannot turn against others, against the real media server on
loopback: junk offers do not spend an address's budget, a per-address cap on live sessions,
X-Forwarded-For only from a trusted proxy, and a bounded rate table."""

from __future__ import annotations

import aiohttp
import pytest

from tests.integration.test_http_api import make_offer, post_offer
from voxline.media.whip import MAX_CLIENTS, RateLimiter


@pytest.mark.parametrize("media_server", [{"session_create_rate_per_min": 5}], indirect=True)
async def test_junk_offers_then_a_valid_one_is_created(media_server) -> None:
    async with aiohttp.ClientSession() as http:
        for i in range(70):
            resp = await post_offer(http, media_server.url, f"v=0\r\njunk {i}\r\n")
            assert resp.status == 400
        sdp, pc = await make_offer()
        resp = await post_offer(http, media_server.url, sdp)
        assert resp.status == 201, await resp.text()
    await pc.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("media_server", [{"max_sessions": 5, "max_sessions_per_client": 2}], indirect=True)
async def test_one_address_holds_at_most_its_share_of_live_sessions(media_server) -> None:
    pcs = []
    async with aiohttp.ClientSession() as http:
        created = []
        for _ in range(3):
            sdp, pc = await make_offer()
            pcs.append(pc)
            created.append(await post_offer(http, media_server.url, sdp))
        assert [r.status for r in created] == [201, 201, 429]
        assert (await created[2].json())["error"] == "too_many_sessions"
        async with http.delete(media_server.url + created[0].headers["Location"],
                               headers={"X-Session-Token": created[0].headers["X-Session-Token"]}) as resp:
            assert resp.status == 200
        sdp, pc = await make_offer()
        pcs.append(pc)
        assert (await post_offer(http, media_server.url, sdp)).status == 201  # one ended: room again
    for pc in pcs:
        await pc.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("media_server", [{"max_sessions": 5, "max_sessions_per_client": 1,
                                           "trusted_proxies": ("127.0.0.0/8",)}], indirect=True)
async def test_forwarded_for_counts_only_from_a_trusted_proxy(media_server) -> None:
    pcs = []
    async with aiohttp.ClientSession() as http:
        async def offer(forwarded: str) -> int:
            sdp, pc = await make_offer()
            pcs.append(pc)
            return (await post_offer(http, media_server.url, sdp, **{"X-Forwarded-For": forwarded})).status

        assert await offer("198.51.100.7, 127.0.0.1") == 201
        assert await offer("198.51.100.7") == 429  # the same caller behind the proxy
        assert await offer("198.51.100.8") == 201  # another caller
    for pc in pcs:
        await pc.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("media_server", [{"max_sessions": 5, "max_sessions_per_client": 1}], indirect=True)
async def test_forwarded_for_from_anyone_else_is_ignored(media_server) -> None:
    pcs = []
    async with aiohttp.ClientSession() as http:
        statuses = []
        for forwarded in ("198.51.100.7", "198.51.100.8"):
            sdp, pc = await make_offer()
            pcs.append(pc)
            statuses.append((await post_offer(http, media_server.url, sdp, **{"X-Forwarded-For": forwarded})).status)
        assert statuses == [201, 429]  # both are 127.0.0.1: a header cannot pick another budget
    for pc in pcs:
        await pc.close()  # type: ignore[attr-defined]


def test_the_rate_table_is_bounded() -> None:
    limiter = RateLimiter(60)
    for i in range(3 * MAX_CLIENTS):
        limiter.record(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", now=float(i) / 1000)
    assert len(limiter.hits) <= MAX_CLIENTS + 1
    assert limiter.wait("10.0.0.1", now=1000.0) is None

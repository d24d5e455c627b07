"""A caller's credential on another caller's session (#14.3), against the real media server on
loopback: knowing a session ID, or holding the callers' `auth_token`, or another session's
secret, opens none of its routes; its own secret and the operator's token do. Listings carry
transcripts only for the operator."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import start_server, stop_server
from tests.integration.test_recovery import call, get_json, own, play_a_turn

CALLERS, OPERATOR = "callers-token-1234", "operator-token-5678"
AUTH = {"Authorization": f"Bearer {CALLERS}"}


async def _answer(http: aiohttp.ClientSession, method: str, url: str, sid: str, headers: dict[str, str],
                  query: str = "") -> int:
    """The status of one of `sid`'s routes, called with `headers` (and `?token=` for the WebSocket)."""
    if method == "WS":
        try:
            async with http.ws_connect(f"{url}/sessions/{sid}/events{query}", headers=headers) as ws:
                await ws.receive_json()
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
    path, body = {"DELETE": (f"/whip/{sid}", None), "GET": (f"/sessions/{sid}", None),
                  "START": ("/listening/start", {"session_id": sid}),
                  "STOP": ("/listening/stop", {"session_id": sid})}[method]
    verb = {"START": "POST", "STOP": "POST"}.get(method, method)
    async with http.request(verb, url + path + query, json=body, headers=headers) as resp:
        if resp.status in (401, 403):
            assert set(await resp.json()) == {"error", "detail"}
            if resp.status == 401:
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        return resp.status


def _one_off(secret: str) -> str:
    """The secret with its last character changed (appending "A" to the rest was the secret
    itself whenever it ended in "A": 1 run in 64 let the test fail)."""
    return secret[:-1] + ("B" if secret.endswith("A") else "A")


ROUTES = ("WS", "GET", "STOP", "START", "DELETE")  # DELETE last: it ends the session


@pytest.mark.parametrize("config", [{}, {"auth_token": CALLERS, "admin_token": OPERATOR}],
                         ids=["open server", "callers and operator tokens"])
async def test_a_caller_credential_on_another_callers_session_opens_nothing(config: dict[str, Any]) -> None:
    from voxline.config import Settings

    running, cleanup = await start_server(Settings(**config), None)
    url, media = running.url, running.media
    callers = AUTH if config else {}
    try:
        async with aiohttp.ClientSession() as http:
            alice, pc_a = await call(http, url, **callers)
            mallory, pc_m = await call(http, url, **callers)
            assert alice.status == mallory.status == 201
            sid, mine = alice.headers["X-Session-ID"], own(alice)
            theirs = own(mallory)["X-Session-Token"]
            await play_a_turn(media, sid, "My account number is 4711.", "Noted.")
            attacks = [
                ({}, "", 401),  # the session ID alone
                # the callers' token is read as a credential, and it is not this session's secret
                ({**callers}, "", 403 if callers else 401),
                ({**callers, "X-Session-Token": theirs}, "", 403),  # Mallory's own session's secret
                ({"Authorization": f"Bearer {theirs}"}, "", 403),  # ... as a bearer token
                ({**callers, "X-Session-Token": _one_off(mine["X-Session-Token"])}, "", 403),  # one character off
            ]
            for method in ROUTES:
                for headers, query, expected in attacks:
                    got = await _answer(http, method, url, sid, headers, query)
                    assert got == expected, (method, headers, got)
                # the WebSocket is the one route that reads ?token=: the callers' token there is no secret
                ws_query = f"?token={CALLERS if config else theirs}"
                assert await _answer(http, "WS", url, sid, {}, ws_query) == 403
            # Alice's call went on untouched: connected, listening, history kept.
            state = media.registry.get(sid)
            assert state is not None and state.state.value == "connected" and state.listening and state.history
            # Her own secret opens every route (header, bearer, and ?token= on the WebSocket) ...
            for method in ROUTES[:-1]:
                assert await _answer(http, method, url, sid, {**callers, **mine}) in (101, 200), method
            assert await _answer(http, "WS", url, sid, {}, f"?token={mine['X-Session-Token']}") == 101
            assert await _answer(http, "GET", url, sid, {"Authorization": f"Bearer {mine['X-Session-Token']}"}) == 200
            # ... and only the WebSocket takes it from the query string.
            assert await _answer(http, "GET", url, sid, {}, f"?token={mine['X-Session-Token']}") == 401
            if config:  # the operator opens any session
                operator = {"Authorization": f"Bearer {OPERATOR}"}
                assert await _answer(http, "GET", url, sid, operator) == 200
                assert await _answer(http, "WS", url, sid, {}, f"?token={OPERATOR}") == 101
                assert await _answer(http, "DELETE", url, mallory.headers["X-Session-ID"], operator) == 200
            assert await _answer(http, "DELETE", url, sid, {**callers, **mine}) == 200
            assert (await get_json(http, f"{url}/sessions/{sid}", {**callers, **mine}))["state"] == "ended"
        await pc_a.close()
        await pc_m.close()
    finally:
        await stop_server(cleanup)


@pytest.mark.parametrize("admin", ["", OPERATOR], ids=["no operator token", "operator token"])
async def test_listings_carry_transcripts_only_for_the_operator(admin: str) -> None:
    from voxline.config import Settings

    running, cleanup = await start_server(Settings(auth_token=CALLERS, admin_token=admin), None)
    try:
        async with aiohttp.ClientSession() as http:
            resp, pc = await call(http, running.url, **AUTH)
            sid = resp.headers["X-Session-ID"]
            await play_a_turn(running.media, sid, "My account number is 4711.", "Noted.")
            if admin:
                listing = await get_json(http, f"{running.url}/sessions", {"Authorization": f"Bearer {admin}"})
                assert listing["sessions"][0]["history"][0]["content"] == "My account number is 4711."
            else:  # the callers' token lists sessions, but not what anyone said
                listing = await get_json(http, f"{running.url}/sessions", AUTH)
                assert listing["sessions"][0]["session_id"] == sid and listing["sessions"][0]["history"] == []
                assert "4711" not in str(listing)
            mine = await get_json(http, f"{running.url}/sessions/{sid}", own(resp))  # its owner reads it
            assert mine["history"][0]["content"] == "My account number is 4711."
            assert "session_token_hash" not in mine and "resume_token_hash" not in mine
        await pc.close()
    finally:
        await stop_server(cleanup)

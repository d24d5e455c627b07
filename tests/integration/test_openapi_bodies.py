"""Real answers of the media server, each validated against the OpenAPI document it serves.

The document's body schemas are generated from `voxline.media.bodies` (the models the handlers
answer with); this drives every JSON route with a real caller and a played turn and checks the
bodies it gets against `GET /openapi.json`, so the two cannot drift.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import jsonschema
import pytest

from tests.integration.test_http_api import make_offer, post_offer
from tests.integration.test_recovery import play_a_turn
from voxline.sessions.ids import new_session_id

SERVER = {"ice_servers": ("stun:stun.example.com:3478", "turn:turn.example.com:3478"), "turn_secret": "s3cret"}


def check(doc: dict[str, Any], name: str, body: Any) -> None:
    """`body` is an instance of `#/components/schemas/{name}` of `doc`."""
    jsonschema.validate(body, {"components": doc["components"], "$ref": f"#/components/schemas/{name}"})


@pytest.mark.parametrize("media_server", [SERVER], indirect=True)
async def test_every_json_answer_matches_the_served_schema(media_server) -> None:
    url, media = media_server.url, media_server.media
    async with aiohttp.ClientSession() as http:
        doc = await (await http.get(f"{url}/openapi.json")).json()

        async def get(path: str, name: str, status: int = 200) -> Any:
            async with http.get(url + path, headers=own) as resp:
                assert resp.status == status, await resp.text()
                body = await resp.json()
            check(doc, name, body)
            return body

        sdp, pc = await make_offer()
        created = await post_offer(http, url, sdp, **{"X-Session-ID": "tmp-1"})
        sid, own = created.headers["X-Session-ID"], {"X-Session-Token": created.headers["X-Session-Token"]}
        await play_a_turn(media, sid, "What time is it?", "It is noon.")
        for action in ("stop", "start"):
            async with http.post(f"{url}/listening/{action}", json={"session_id": sid}, headers=own) as resp:
                assert resp.status == 200
                check(doc, "Listening", await resp.json())
        session = await get(f"/sessions/{sid}", "Session")
        assert session["turns"] == 1 and session["history"] and session["turn_metrics"]
        listing = await get("/sessions", "SessionList")
        assert listing["count"] == 1 and listing["aggregates"]["stages_ms"]["stt"]["n"] == 1
        assert (await get("/healthz", "Status")) == {"status": "ok"}
        assert (await get("/readyz", "Ready"))["sessions"] == 1
        ice = await get("/ice-servers", "IceServers")
        assert ice["iceServers"][0] == {"urls": ["stun:stun.example.com:3478"]}  # no null username for STUN
        assert ice["iceServers"][1]["username"] and ice["iceServers"][1]["credential"]
        await get(f"/sessions/{new_session_id()}", "Error", status=404)
        async with http.delete(f"{url}/whip/{sid}", headers=own) as resp:
            assert resp.status == 200
            check(doc, "Ended", await resp.json())
        assert (await get(f"/sessions/{sid}", "Session"))["state"] == "ended"
        await pc.close()  # type: ignore[attr-defined]

"""Minimal WHIP client (RFC 9725): POST the offer, keep the server's session ID and secret,
DELETE to end."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp
from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from voxline.rtc.connection import new_peer_connection
from voxline.rtc.hooks import decode_inline, receive_direct, tune_jitter_buffers
from voxline.rtc.receive import DirectReceiver


class WhipError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"WHIP request failed: HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


@dataclass
class WhipSession:
    session_id: str
    location: str
    client_ref: str
    token: str = ""  # X-Session-Token: what opens this session's routes (docs/security.md)
    resume_token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Session-Token": self.token} if self.token else {}


class WhipClient:
    def __init__(self, base_url: str, token: str | None = None, jitter_prefetch: int = 2) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.jitter_prefetch = jitter_prefetch
        self.pc = new_peer_connection()
        self.remote_track: MediaStreamTrack | None = None
        self.inline_audio = False
        self.direct: DirectReceiver | None = None
        self.session: WhipSession | None = None
        self._http: aiohttp.ClientSession | None = None

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self.remote_track = track

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(headers=self.headers, timeout=aiohttp.ClientTimeout(total=30))
        return self._http

    def url(self, path: str) -> str:
        return urljoin(self.base_url, path.lstrip("/"))

    async def connect(self, track: MediaStreamTrack,
                      on_audio: Callable[[bytes, int], None] | None = None) -> WhipSession:
        """Offer `track` and receive the agent's voice: as `remote_track` frames, or, with
        `on_audio`, decoded in the loop as `on_audio(mono s16 48 kHz, rtp_time)` per frame
        (`inline_audio` says which)."""
        self.pc.addTrack(track)  # sendrecv: our microphone out, the agent's voice back
        if on_audio is not None:
            self.inline_audio = decode_inline(self.pc, on_audio, rate=48_000)
        await self.pc.setLocalDescription(await self.pc.createOffer())  # gathers host candidates
        client_ref = "tmp-" + secrets.token_hex(6)
        async with self.http.post(self.url("/whip"), data=self.pc.localDescription.sdp,
                                  headers={"Content-Type": "application/sdp", "X-Session-ID": client_ref}) as resp:
            body = await resp.text()
            if resp.status != 201:
                raise WhipError(resp.status, body)
            session_id = resp.headers["X-Session-ID"]
            location = resp.headers["Location"]
            token, resume = resp.headers.get("X-Session-Token", ""), resp.headers.get("X-Resume-Token", "")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        tune_jitter_buffers(self.pc, self.jitter_prefetch)
        if on_audio is not None and self.inline_audio:
            self.direct = receive_direct(self.pc, on_audio, rate=48_000)  # Opus, straight off the socket
        self.session = WhipSession(session_id, location, client_ref, token, resume)
        return self.session

    async def set_listening(self, on: bool) -> None:
        assert self.session is not None
        path = "/listening/start" if on else "/listening/stop"
        async with self.http.post(self.url(path), json={"session_id": self.session.session_id},
                                  headers=self.session.headers) as resp:
            if resp.status != 200:
                raise WhipError(resp.status, await resp.text())

    async def close(self) -> None:
        try:
            if self.session is not None:
                async with self.http.delete(self.url(self.session.location), headers=self.session.headers) as resp:
                    await resp.read()
        except aiohttp.ClientError:
            pass
        finally:
            await self.pc.close()
            if self._http is not None:
                await self._http.close()

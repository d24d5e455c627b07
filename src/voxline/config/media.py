"""Settings of the media server: its HTTP listener, its sessions and their limits, WebRTC and ICE."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from voxline.config.types import Flag, Names, OptionalHttpUrl, Port, PortRange, Positive, Seconds


class MediaSettings(BaseModel):
    """HTTP / media server: where it listens, how many calls, how each peer connection behaves."""

    host: str = "127.0.0.1"
    port: Port = 8001
    public_url: OptionalHttpUrl = ""  # advertised base URL; empty = derive from the request
    max_sessions: Positive = 20
    max_body_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    session_idle_timeout_s: Seconds = 300.0
    session_connect_timeout_s: Seconds = 30.0  # end a session whose peer has not connected by then
    session_create_rate_per_min: Positive = 60
    max_sessions_per_client: Positive = 5  # live sessions one address may hold here (then 429)
    listen_on_connect: Flag = True
    rtc_jitter_prefetch: Annotated[int, Field(ge=0, le=16)] = 1  # packets aiortc buffers before decoding the caller (20 ms each)
    # What the answer asks of the caller's Opus encoder (RFC 7587 fmtp; browsers follow it). 16000:
    # wideband, every bit spent below 8 kHz, all that STT hears (0: ask nothing). Bitrate: 0 = the caller's own;
    # 64 kbit/s, since at 32 Whisper heard the turn ~1-2.5 points worse than the same audio uncoded (README, WER).
    rtc_opus_max_playback_rate: Annotated[int, Field(ge=0, le=48_000)] = 16_000
    rtc_opus_max_bitrate: Annotated[int, Field(ge=0, le=510_000)] = 64_000
    rtc_send_silence: Flag = False  # send silent frames between replies (default: nothing, like DTX)
    rtc_host_addresses: Names = ()  # ICE host candidates on these addresses only; empty = all
    rtc_port_range: PortRange = ""  # e.g. 40000-40999: ICE host sockets bind only there (one port per call); empty = any
    rtc_announced_address: str = ""  # public address of a 1:1 NAT: host candidates also offered on it
    ice_servers: Names = ()  # STUN/TURN URLs handed to callers (GET /ice-servers), e.g. turn:turn.example.com:3478
    turn_secret: str = ""  # coturn static-auth-secret: callers get time-limited TURN credentials
    turn_ttl_s: Seconds = 3600.0  # how long such a credential is valid
    rtc_max_packets_per_s: Annotated[float, Field(gt=0)] = 200.0  # datagrams a second a caller may send (more: dropped, counted)
    rtc_max_bytes_per_s: Annotated[float, Field(gt=0)] = 100_000.0  # bytes a second a caller may send
    rtc_max_pre_dtls_datagrams: Annotated[float, Field(ge=10)] = 50.0  # before DTLS completes (refilled at 1/5 a second)
    rtc_max_candidates: Positive = 16  # remote ICE candidates taken from an offer
    rtc_allow_private_candidates: Flag = True  # check remote candidates in private ranges (loopback: when offered)
    rtc_resolve_mdns: Flag = True  # resolve browsers' mDNS (.local) candidates, then filter the address; false: refuse them
    rtc_close_timeout_s: Seconds = 5.0  # closing a peer connection never takes longer

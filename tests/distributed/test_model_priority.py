"""The model services on one machine: the LLM's service yields the cores to STT and TTS.

While the first piece of a reply is synthesized, the remote LLM goes on generating the rest
of it; an embedded LLM is paused for that moment, a remote one cannot be, so its process
runs nicer (`serve_llm_nice`) and the TTS gets the cores first.
"""

from __future__ import annotations

import os

from procs import ModelServices, model_services  # noqa: F401


def thread_niceness(pid: int) -> set[int]:
    """The nice value of every thread of process `pid` (field 19 of /proc/PID/task/TID/stat)."""
    values = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            values.add(int(f.read().rsplit(")", 1)[1].split()[16]))
    return values


def test_the_llm_service_runs_nicer_than_stt_and_tts(model_services: ModelServices) -> None:  # noqa: F811
    pids = {kind: getattr(model_services, kind).pid for kind in ("stt", "llm", "tts")}
    assert all(pids.values()), pids
    assert thread_niceness(pids["llm"]) == {10}  # every thread, the model's own included
    assert thread_niceness(pids["stt"]) == {0}
    assert thread_niceness(pids["tts"]) == {0}

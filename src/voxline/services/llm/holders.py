"""Who holds an LLM's "first audio first" gate: one hold per task (or per thread, off a loop).

The embedded LLM (`reply.Gate`) and the remote one (`remote_hold.RemoteHold`) both key their
holds by it, so a reply's `clear()` and `set()` pair up whichever back-end it talks to.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable


def current_holder() -> Hashable:
    """The running asyncio task, or this thread when there is none."""
    try:
        return asyncio.current_task() or threading.get_ident()
    except RuntimeError:
        return threading.get_ident()

"""The close code that tells the page to resume its call is one number on both sides."""

from __future__ import annotations

import re
from pathlib import Path

from voxline.media.relay import RESUMABLE_CLOSE

WEB = Path(__file__).resolve().parents[3] / "src" / "voxline" / "web"


def test_the_page_resumes_on_the_close_code_the_media_server_sends() -> None:
    page = re.search(r"export const RESUMABLE_CLOSE = (\d+);", (WEB / "resume.js").read_text())
    assert page is not None, "resume.js no longer declares RESUMABLE_CLOSE"
    assert int(page.group(1)) == RESUMABLE_CLOSE
    assert 4000 <= RESUMABLE_CLOSE <= 4999  # the range RFC 6455 leaves to applications

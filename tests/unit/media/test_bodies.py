"""The HTTP body models: a session record field the model does not know fails at once."""

from __future__ import annotations

import dataclasses

import pydantic
import pytest

from voxline.media import bodies
from voxline.sessions.registry import Session, SessionState


def test_the_session_body_has_every_field_of_the_record_but_the_token_hash() -> None:
    record = {f.name for f in dataclasses.fields(Session)} - {"id", "resume_token_hash", "session_token_hash"}
    assert set(bodies.Session.model_fields) == record | {"session_id", "duration_s"}


def test_a_record_with_a_field_the_body_lacks_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    session = Session(id="session_1_aaaaaaaaaaaaaaaa", state=SessionState.CONNECTED)
    assert bodies.Session.of(session).model_dump(mode="json")["state"] == "connected"
    plain = Session.to_json
    monkeypatch.setattr(Session, "to_json", lambda self: {**plain(self), "secret_note": "x"})
    with pytest.raises(pydantic.ValidationError):
        bodies.Session.of(session)

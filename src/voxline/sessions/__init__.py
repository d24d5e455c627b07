"""Sessions: server-generated IDs, validation, the per-session record and the registry."""

from voxline.sessions.ids import is_valid_session_id, new_session_id
from voxline.sessions.registry import Session, SessionRegistry, SessionState

__all__ = ["Session", "SessionRegistry", "SessionState", "is_valid_session_id", "new_session_id"]

"""Server-side sessions of the curation web UI (the owner of table ``web_sessions``).

A browser signs in with its user token once and then carries only an opaque random session
id in its cookie. The table keeps the id's SHA-256, never the id itself, with the user and
the session's created / expires / last-seen / revoked times. A session is valid while it is
not revoked, its absolute expiry has not passed, it was seen within the idle time, and its
user is not disabled.

Functions on the caller's connection, so that ``CurationService`` revokes a user's sessions
in the same transaction that disables or re-keys the user. Nothing here imports the service.
"""

from __future__ import annotations

import hashlib
import secrets

from marrowscope.core.db import DictConnection

# Expired sessions are kept this long (what a look at recent sign-ins needs), then pruned.
KEEP_EXPIRED_DAYS = 7
# A session id: 32 random bytes, URL-safe base64 (43 characters).
SESSION_ID_BYTES = 32
MAX_SESSION_ID_CHARS = 128


def session_hash(session_id: str) -> str:
    """The stored form of a session id: its SHA-256, hex."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def start_session(conn: DictConnection, user_name: str, absolute_seconds: int) -> str:
    """Record a new session of ``user_name`` that ends at the latest after
    ``absolute_seconds``; return its id (shown to the browser once, never stored)."""
    session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
    conn.execute(
        """INSERT INTO web_sessions (id_sha256, user_name, expires_at)
           VALUES (%s, %s, now() + make_interval(secs => %s))""",
        (session_hash(session_id), user_name, absolute_seconds),
    )
    # Sign-in is rare, so it is where old rows go: no separate clean-up job is needed.
    conn.execute(
        "DELETE FROM web_sessions WHERE expires_at < now() - make_interval(days => %s)",
        (KEEP_EXPIRED_DAYS,),
    )
    return session_id


def session_user(
    conn: DictConnection, session_id: str, idle_seconds: int
) -> tuple[str, str] | None:
    """(user name, role) of a valid session, or None (unknown, revoked, expired, idle too
    long, or the user disabled). Marks the session as seen now.

    ``last_seen_at`` is written at most every ``idle_seconds / 10`` (and at least every
    minute) rather than on every request: thumbnails come many at once, and each write would
    lock the same row. The idle limit is then kept to within a tenth."""
    if not session_id or len(session_id) > MAX_SESSION_ID_CHARS:
        return None
    touch_seconds = min(60.0, idle_seconds / 10)
    row = conn.execute(
        """WITH found AS (
               SELECT s.id_sha256, s.last_seen_at, u.name, u.role
               FROM web_sessions s JOIN users u ON u.name = s.user_name
               WHERE s.id_sha256 = %(h)s AND s.revoked_at IS NULL AND s.expires_at > now()
                 AND s.last_seen_at > now() - make_interval(secs => %(idle)s)
                 AND u.disabled_at IS NULL),
           touched AS (
               UPDATE web_sessions SET last_seen_at = now()
               WHERE id_sha256 IN (SELECT id_sha256 FROM found
                                   WHERE last_seen_at < now() - make_interval(secs => %(touch)s)))
           SELECT name, role FROM found""",
        {"h": session_hash(session_id), "idle": idle_seconds, "touch": touch_seconds},
    ).fetchone()
    return (row["name"], row["role"]) if row else None


def end_session(conn: DictConnection, session_id: str) -> bool:
    """Revoke one session (sign-out); True if it was live. Replaying its id then fails."""
    if not session_id or len(session_id) > MAX_SESSION_ID_CHARS:
        return False
    result = conn.execute(
        """UPDATE web_sessions SET revoked_at = now()
           WHERE id_sha256 = %s AND revoked_at IS NULL""",
        (session_hash(session_id),),
    )
    return result.rowcount > 0


def revoke_user_sessions(conn: DictConnection, user_name: str) -> int:
    """Revoke every live session of a user (disabled, token rotated); how many there were."""
    result = conn.execute(
        """UPDATE web_sessions SET revoked_at = now()
           WHERE user_name = %s AND revoked_at IS NULL AND expires_at > now()""",
        (user_name,),
    )
    return result.rowcount

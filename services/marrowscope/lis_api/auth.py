"""Who is calling: API keys (stored as sha256) or OAuth2 client-credentials JWTs, with scopes.

401 = no or bad credentials; 403 = authenticated but the scope is missing. Object-level
checks (a client sees only its own specimens) are in the store queries, which answer 404 for
another client's specimen so its existence does not leak.

Clients can be disabled and their keys rotated (both audited). Every request reads the
client's row, so a disabled client's key and the tokens it was issued stop working at once,
and so do the old key and the tokens issued with it after a rotation (a token names the key
generation it was issued under, claim ``kv``). Clients whose key digest comes from the
settings (``MARROWSCOPE_LIS_API_KEY_HASHES``) are disabled when the digest is removed there.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

from marrowscope.core.audit import append_event
from marrowscope.core.db import DictConnection, DictPool
from marrowscope.core.errors import FailedPrecondition, NotFound

SCOPES = ("submit", "read", "review", "admin")
TOKEN_AUDIENCE = "marrowscope-lis-api"
TOKEN_ISSUER = "marrowscope"
# Claims every access token must carry; one missing is a 401.
REQUIRED_CLAIMS = ("exp", "iat", "aud", "sub")
# The actor of what the API does because of its settings (bootstrap clients).
SETTINGS_ACTOR = "lis-api-settings"


@dataclass(frozen=True)
class Client:
    """An authenticated API client: its opaque id, display name and the scopes it may use."""

    id: str
    name: str
    scopes: frozenset[str]

    @property
    def principal(self) -> str:
        """Who this client is in the audit trail and in reports (its id: names repeat)."""
        return f"lis-client:{self.id}"


@dataclass(frozen=True, kw_only=True)
class ClientRecord:
    """An API client as an administrator sees it (never its key or the key's digest)."""

    id: str
    name: str
    scopes: list[str]
    origin: str
    disabled: bool
    disabled_at: datetime | None
    disabled_by: str | None
    key_generation: int
    key_rotated_at: datetime | None
    created_at: datetime


class AuthError(Exception):
    """401: credentials missing, unknown or expired."""


def key_digest(key: str) -> str:
    """The sha256 hex digest of an API key (all the database keeps of it)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key."""
    return "msk_" + secrets.token_urlsafe(32)


def bootstrap_id(digest: str) -> str:
    """The client id of a key digest listed in the settings."""
    return f"bootstrap-{digest.lower()[:12]}"


def _record(row: dict[str, Any]) -> ClientRecord:
    return ClientRecord(
        id=row["id"],
        name=row["name"],
        scopes=sorted(row["scopes"]),
        origin=row["origin"],
        disabled=row["disabled"],
        disabled_at=row["disabled_at"],
        disabled_by=row["disabled_by"],
        key_generation=row["key_generation"],
        key_rotated_at=row["key_rotated_at"],
        created_at=row["created_at"],
    )


class Authenticator:
    """API clients (owns the ``api_clients`` table): bootstrap, registration, disabling, key
    rotation, and turning a credential into a :class:`Client`. Every method is blocking."""

    def __init__(self, pool: DictPool, jwt_secret: str, token_ttl_s: int) -> None:
        self.pool = pool
        self.jwt_secret = jwt_secret
        self.token_ttl_s = token_ttl_s

    # --- clients ----------------------------------------------------------------------------
    def bootstrap(self, key_hashes: list[str]) -> None:
        """Keys from the settings (the Helm chart's generated key): clients with every scope.

        The settings are the truth for these clients: one whose digest is no longer listed
        is disabled (audited), and one listed again after that is enabled again. A client
        an administrator disabled through the API stays disabled."""
        digests = sorted({d.strip().lower() for d in key_hashes if d.strip()})
        wanted = [bootstrap_id(d) for d in digests]
        with self.pool.connection() as conn, conn.transaction():
            for digest, client_id in zip(digests, wanted, strict=True):
                created = conn.execute(
                    """INSERT INTO api_clients (id, name, key_hash, scopes, origin)
                       VALUES (%s, 'bootstrap', %s, %s, 'settings')
                       ON CONFLICT DO NOTHING RETURNING id""",
                    (client_id, digest, list(SCOPES)),
                ).fetchone()
                if created is not None:
                    _audit(
                        conn,
                        SETTINGS_ACTOR,
                        "api_client.create",
                        client_id,
                        None,
                        {"name": "bootstrap", "scopes": list(SCOPES), "origin": "settings"},
                    )
                    continue
                enabled = conn.execute(
                    """UPDATE api_clients SET disabled = false, disabled_at = NULL,
                           disabled_by = NULL
                       WHERE id = %s AND key_hash = %s AND disabled AND disabled_by = %s
                       RETURNING id""",
                    (client_id, digest, SETTINGS_ACTOR),
                ).fetchone()
                if enabled is not None:
                    _audit(
                        conn,
                        SETTINGS_ACTOR,
                        "api_client.enable",
                        client_id,
                        {"disabled": True},
                        {"disabled": False},
                        "its key digest is listed in the settings again",
                    )
            removed = conn.execute(
                """UPDATE api_clients SET disabled = true, disabled_at = now(), disabled_by = %s
                   WHERE origin = 'settings' AND NOT disabled AND NOT (id = ANY(%s))
                   RETURNING id""",
                (SETTINGS_ACTOR, wanted),
            ).fetchall()
            for row in removed:
                _audit(
                    conn,
                    SETTINGS_ACTOR,
                    "api_client.disable",
                    row["id"],
                    {"disabled": False},
                    {"disabled": True},
                    "its key digest was removed from the settings",
                )

    def create_client(self, name: str, scopes: list[str], actor: str) -> tuple[Client, str]:
        """A new client and its key (returned once; only the digest is kept); audited."""
        key = new_key()
        client = Client("c-" + secrets.token_hex(8), name, frozenset(scopes))
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                """INSERT INTO api_clients (id, name, key_hash, scopes, origin)
                   VALUES (%s, %s, %s, %s, 'admin')""",
                (client.id, name, key_digest(key), sorted(scopes)),
            )
            _audit(
                conn,
                actor,
                "api_client.create",
                client.id,
                None,
                {"name": name, "scopes": sorted(scopes), "origin": "admin"},
            )
        return client, key

    def clients(self) -> list[ClientRecord]:
        """Every registered client, oldest first."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                """SELECT id, name, scopes, origin, disabled, disabled_at, disabled_by,
                          key_generation, key_rotated_at, created_at
                   FROM api_clients ORDER BY created_at, id"""
            ).fetchall()
        return [_record(r) for r in rows]

    def disable_client(self, client_id: str, actor: str, reason: str) -> ClientRecord:
        """Disable a client: its key and every token it was issued are refused from now on
        (audited; disabling a disabled client changes nothing and records nothing)."""
        with self.pool.connection() as conn, conn.transaction():
            row = _locked(conn, client_id)
            if not row["disabled"]:
                changed = conn.execute(
                    """UPDATE api_clients SET disabled = true, disabled_at = now(),
                           disabled_by = %s
                       WHERE id = %s RETURNING *""",
                    (actor, client_id),
                ).fetchone()
                assert changed is not None
                row = changed
                _audit(
                    conn,
                    actor,
                    "api_client.disable",
                    client_id,
                    {"disabled": False},
                    {"disabled": True},
                    reason,
                )
        return _record(row)

    def rotate_key(self, client_id: str, actor: str, reason: str) -> tuple[ClientRecord, str]:
        """A new key for the client (returned once); the old key and the tokens issued with
        it are refused from now on (audited). A client from the settings is rotated there."""
        key = new_key()
        with self.pool.connection() as conn, conn.transaction():
            row = _locked(conn, client_id)
            if row["origin"] == "settings":
                raise FailedPrecondition(
                    f"client {client_id}'s key comes from the settings: put the new key's "
                    "sha256 digest in MARROWSCOPE_LIS_API_KEY_HASHES (the chart's "
                    "lis-api-key-hashes) in place of the old one and restart the API; or "
                    "disable it here"
                )
            if row["disabled"]:
                raise FailedPrecondition(
                    f"client {client_id} is disabled: register a new client instead"
                )
            rotated = conn.execute(
                """UPDATE api_clients SET key_hash = %s, key_generation = key_generation + 1,
                       key_rotated_at = now()
                   WHERE id = %s RETURNING *""",
                (key_digest(key), client_id),
            ).fetchone()
            assert rotated is not None
            _audit(
                conn,
                actor,
                "api_client.rotate_key",
                client_id,
                {"key_generation": row["key_generation"]},
                {"key_generation": rotated["key_generation"]},
                reason,
            )
        return _record(rotated), key

    # --- credentials ------------------------------------------------------------------------
    def by_key(self, key: str) -> Client:
        """The enabled client whose API key this is (AuthError else)."""
        digest = key_digest(key)
        with self.pool.connection() as conn:
            row = conn.execute(
                """SELECT id, name, key_hash, scopes FROM api_clients
                   WHERE key_hash = %s AND NOT disabled""",
                (digest,),
            ).fetchone()
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            raise AuthError("unknown or disabled API key: ask an administrator for a valid key")
        return Client(row["id"], row["name"], frozenset(row["scopes"]))

    def issue_token(self, client_id: str, secret: str, scope: str) -> dict[str, Any]:
        """OAuth2 client credentials: the client's key is its secret."""
        with self.pool.connection() as conn:
            row = conn.execute(
                """SELECT id, name, key_hash, scopes, key_generation FROM api_clients
                   WHERE key_hash = %s AND NOT disabled""",
                (key_digest(secret),),
            ).fetchone()
        if row is None or row["id"] != client_id:
            raise AuthError(
                "client_id and client_secret do not match an enabled client: check both, or "
                "ask an administrator whether the key was rotated"
            )
        granted = frozenset(row["scopes"])
        wanted = set(scope.split()) if scope else set(granted)
        if not wanted <= granted:
            raise PermissionError(
                f"scope not granted to this client: {' '.join(sorted(wanted - granted))}"
            )
        now = int(time.time())
        claims = {
            "sub": row["id"],
            "scope": " ".join(sorted(wanted)),
            "iat": now,
            "exp": now + self.token_ttl_s,
            "aud": TOKEN_AUDIENCE,
            "iss": TOKEN_ISSUER,
            "kv": row["key_generation"],
        }
        token = jwt.encode(claims, self.jwt_secret, algorithm="HS256")
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_ttl_s,
            "scope": claims["scope"],
        }

    def by_token(self, token: str) -> Client:
        """The client an access token was issued to, if the token is valid, carries every
        required claim, and its client is still enabled under the same key (AuthError
        else). Its scopes: those the token names that the client still has."""
        try:
            claims = jwt.decode(
                token,
                self.jwt_secret,
                algorithms=["HS256"],
                audience=TOKEN_AUDIENCE,
                issuer=TOKEN_ISSUER,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("access token expired: request a new one at /v1/oauth/token") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(
                f"access token lacks the '{exc.claim}' claim: request a new one at /v1/oauth/token"
            ) from None
        except jwt.InvalidTokenError:
            raise AuthError("invalid access token: request a new one at /v1/oauth/token") from None
        scope, generation = claims.get("scope"), claims.get("kv")
        if not isinstance(scope, str) or not isinstance(generation, int):
            raise AuthError("invalid access token: request a new one at /v1/oauth/token")
        with self.pool.connection() as conn:
            row = conn.execute(
                """SELECT name, scopes, key_generation FROM api_clients
                   WHERE id = %s AND NOT disabled""",
                (claims["sub"],),
            ).fetchone()
        if row is None:
            raise AuthError(
                "the token's client is disabled or unknown: ask an administrator for a valid client"
            )
        if row["key_generation"] != generation:
            raise AuthError(
                "the token was issued with a key that has since been rotated: request a new "
                "token with the new key"
            )
        scopes = frozenset(scope.split()) & frozenset(row["scopes"])
        return Client(claims["sub"], row["name"], scopes)

    def authenticate(self, credential: str) -> Client:
        """The client behind an API key or an access token (AuthError else)."""
        # JWTs have two dots; API keys never do.
        return self.by_token(credential) if credential.count(".") == 2 else self.by_key(credential)


def _locked(conn: DictConnection, client_id: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT * FROM api_clients WHERE id = %s FOR UPDATE", (client_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"API client {client_id} not found (GET /v1/admin/clients lists them)")
    return row


def _audit(
    conn: DictConnection,
    actor: str,
    action: str,
    client_id: str,
    previous: dict[str, Any] | None,
    current: dict[str, Any] | None,
    reason: str | None = None,
) -> None:
    append_event(
        conn,
        actor=actor,
        action=action,
        entity="api_client",
        entity_id=client_id,
        previous=previous,
        current=current,
        reason=reason,
    )


class RateLimiter:
    """A token bucket per client (per API process): ``rate`` requests/s, ``burst`` at once."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate, self.burst = rate_per_s, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client_id: str) -> float:
        """0 if the request may go ahead (and takes a token), else seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client_id] = (tokens, now)
            return (1.0 - tokens) / self.rate

"""Who is calling: API keys (stored as sha256) or OAuth2 client-credentials JWTs, with scopes.

401 = no or bad credentials; 403 = authenticated but the scope is missing. Object-level
checks (a client sees only its own specimens) are in the store queries, which answer 404 for
another client's specimen so its existence does not leak.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt

from marrowscope.core.db import DictPool

SCOPES = ("submit", "read", "review", "admin")
TOKEN_AUDIENCE = "marrowscope-lis-api"


@dataclass(frozen=True)
class Client:
    id: str
    name: str
    scopes: frozenset[str]


class AuthError(Exception):
    """401: credentials missing, unknown or expired."""


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Authenticator:
    def __init__(self, pool: DictPool, jwt_secret: str, token_ttl_s: int) -> None:
        self.pool = pool
        self.jwt_secret = jwt_secret
        self.token_ttl_s = token_ttl_s

    def bootstrap(self, key_hashes: list[str]) -> None:
        """Keys from the settings (the Helm chart's generated key): clients with every scope."""
        with self.pool.connection() as conn:
            for digest in key_hashes:
                conn.execute(
                    """INSERT INTO api_clients (id, name, key_hash, scopes)
                       VALUES (%s, 'bootstrap', %s, %s) ON CONFLICT (key_hash) DO NOTHING""",
                    (f"bootstrap-{digest[:12]}", digest.lower(), list(SCOPES)),
                )

    def create_client(self, name: str, scopes: list[str]) -> tuple[Client, str]:
        """A new client and its key (returned once; only the digest is kept)."""
        key = "msk_" + secrets.token_urlsafe(32)
        client = Client("c-" + secrets.token_hex(8), name, frozenset(scopes))
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO api_clients (id, name, key_hash, scopes) VALUES (%s, %s, %s, %s)",
                (client.id, name, key_digest(key), sorted(scopes)),
            )
        return client, key

    def by_key(self, key: str) -> Client:
        digest = key_digest(key)
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT id, name, key_hash, scopes FROM api_clients WHERE key_hash = %s AND NOT disabled",
                (digest,),
            ).fetchone()
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            raise AuthError("unknown API key")
        return Client(row["id"], row["name"], frozenset(row["scopes"]))

    def issue_token(self, client_id: str, secret: str, scope: str) -> dict[str, Any]:
        """OAuth2 client credentials: the client's key is its secret."""
        client = self.by_key(secret)
        if client.id != client_id:
            raise AuthError("client_id and client_secret do not match")
        wanted = set(scope.split()) if scope else set(client.scopes)
        if not wanted <= client.scopes:
            raise PermissionError(
                f"scope not granted to this client: {' '.join(sorted(wanted - client.scopes))}"
            )
        now = int(time.time())
        claims = {
            "sub": client.id,
            "scope": " ".join(sorted(wanted)),
            "iat": now,
            "exp": now + self.token_ttl_s,
            "aud": TOKEN_AUDIENCE,
            "iss": "marrowscope",
        }
        token = jwt.encode(claims, self.jwt_secret, algorithm="HS256")
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_ttl_s,
            "scope": claims["scope"],
        }

    def by_token(self, token: str) -> Client:
        try:
            claims = jwt.decode(
                token, self.jwt_secret, algorithms=["HS256"], audience=TOKEN_AUDIENCE
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("access token expired: request a new one at /v1/oauth/token") from None
        except jwt.InvalidTokenError:
            raise AuthError("invalid access token") from None
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT name FROM api_clients WHERE id = %s AND NOT disabled", (claims["sub"],)
            ).fetchone()
        if row is None:
            raise AuthError("the token's client is disabled or unknown")
        return Client(claims["sub"], row["name"], frozenset(claims["scope"].split()))

    def authenticate(self, credential: str) -> Client:
        # JWTs have two dots; API keys never do.
        return self.by_token(credential) if credential.count(".") == 2 else self.by_key(credential)


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

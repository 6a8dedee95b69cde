"""Security of the curation web app on real PostgreSQL, through real HTTP requests to the app:
server-side sessions (the cookie is an opaque id, sign-out revokes it, idle and absolute
expiry), disabled users and rotated tokens (HTTP and the gRPC servicer alike), re-keyed
bootstrap users, cross-origin state changes refused, security headers, and the API docs
off by default."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from marrowscope.core.clients import ServiceClients
from marrowscope.core.errors import Unauthenticated
from marrowscope.core.objectstore import open_store
from marrowscope.core.settings import ObjectStoreSettings, PeerSettings
from marrowscope.curation.service import CurationService
from marrowscope.curation.servicer import CurationServicer
from marrowscope.curation.settings import CurationSettings
from marrowscope.curation.web import create_web_app
from marrowscope.curation.web.context import COOKIE
from marrowscope.curation.workbench import Workbench
from marrowscope.v1 import curation_pb2
from tests.conftest import free_port

pytestmark = pytest.mark.integration
AppFactory = Callable[..., TestClient]


@pytest.fixture()
def people(db_pool) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """An admin and an expert with their tokens, on a curation service over the test DB."""
    service = CurationService(db_pool)
    tag = uuid.uuid4().hex[:8]
    admin, expert = f"adm-{tag}", f"exp-{tag}"
    admin_token, expert_token = f"adm-{uuid.uuid4()}", f"exp-{uuid.uuid4()}"
    service.ensure_user(admin, "admin", admin_token)
    service.ensure_user(expert, "expert", expert_token)
    return {
        "service": service,
        "pool": db_pool,
        "admin": admin,
        "admin_token": admin_token,
        "expert": expert,
        "expert_token": expert_token,
    }


@pytest.fixture()
def make_app(people: dict[str, Any], tmp_path) -> Iterator[AppFactory]:  # type: ignore[no-untyped-def]
    """Build the web app with the given curation settings; each a TestClient (real ASGI)."""
    clients: list[TestClient] = []

    def make(**settings: Any) -> TestClient:
        service = people["service"]
        app = create_web_app(
            service,
            Workbench(people["pool"], service),
            open_store(ObjectStoreSettings(root=tmp_path / "store")),
            ServiceClients(
                PeerSettings(
                    orchestrator_addr=f"127.0.0.1:{free_port()}", GRPC_ALLOW_PLAINTEXT=True
                )
            ),
            CurationSettings(**settings),
        )
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(http: TestClient, token: str) -> str:
    """Sign in; the session id the cookie carries."""
    reply = http.post("/api/v1/session", json={"token": token})
    assert reply.status_code == 200, reply.text
    return str(http.cookies[COOKIE])


def with_cookie(http: TestClient, value: str) -> None:
    """Make the client send exactly this session cookie (a replayed or forged one)."""
    http.cookies.clear()
    http.cookies.set(COOKIE, value)


def session_row(pool, session_id: str) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT * FROM web_sessions WHERE id_sha256 = %s",
            (hashlib.sha256(session_id.encode()).hexdigest(),),
        ).fetchone()
    return dict(row) if row else None


def audit(pool, action: str, name: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    with pool.connection() as conn:
        rows = conn.execute(
            """SELECT actor, action, current, reason FROM audit_events
               WHERE entity = 'user' AND entity_id = %s AND action = %s ORDER BY id""",
            (name, action),
        ).fetchall()
    return [dict(r) for r in rows]


def test_the_cookie_is_an_opaque_session_id_stored_only_as_its_hash(
    make_app: AppFactory, people: dict[str, Any]
) -> None:
    http = make_app()
    reply = http.post("/api/v1/session", json={"token": people["expert_token"]})
    assert reply.status_code == 200
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain HTTP unless the setting says HTTPS
    session_id = str(http.cookies[COOKIE])
    assert session_id != people["expert_token"] and people["expert_token"] not in cookie
    assert len(session_id) >= 40
    assert http.get("/api/v1/me").json()["name"] == people["expert"]
    row = session_row(people["pool"], session_id)
    assert row is not None and row["user_name"] == people["expert"] and row["revoked_at"] is None
    assert (row["expires_at"] - row["created_at"]).total_seconds() == pytest.approx(12 * 3600, 5)
    with people["pool"].connection() as conn:
        stored = conn.execute(
            "SELECT count(*) AS n FROM web_sessions WHERE id_sha256 = %s", (session_id,)
        ).fetchone()
    assert stored["n"] == 0  # the id itself is nowhere in the table

    # The user's token is no longer a session: as a cookie it gets 401.
    with_cookie(http, people["expert_token"])
    assert http.get("/api/v1/me").status_code == 401
    with_cookie(http, "x" * 5000)
    assert http.get("/api/v1/me").status_code == 401
    # Service accounts cannot sign in at all.
    service_token = f"svc-{uuid.uuid4()}"
    people["service"].ensure_user(f"svc-{service_token[4:12]}", "service", service_token)
    assert http.post("/api/v1/session", json={"token": service_token}).status_code == 403

    secure = make_app(secure_cookies=True)
    signed = secure.post("/api/v1/session", json={"token": people["expert_token"]})
    assert "secure" in signed.headers["set-cookie"].lower()


def test_sign_out_revokes_the_session_on_the_server(
    make_app: AppFactory, people: dict[str, Any]
) -> None:
    http = make_app()
    first = sign_in(http, people["expert_token"])
    second = sign_in(http, people["expert_token"])  # signing in again ends the first session
    assert first != second
    with_cookie(http, first)
    assert http.get("/api/v1/me").status_code == 401
    with_cookie(http, second)
    assert http.get("/api/v1/me").status_code == 200
    out = http.delete("/api/v1/session")
    assert out.status_code == 200 and "max-age=0" in out.headers["set-cookie"].lower()
    row = session_row(people["pool"], second)
    assert row is not None and row["revoked_at"] is not None
    with_cookie(http, second)  # a copy of the cookie, replayed after sign-out
    replay = http.get("/api/v1/me")
    assert replay.status_code == 401 and "sign in again" in replay.json()["detail"]
    assert http.post("/api/v1/claims/release", json={"task_ids": []}).status_code == 401


def test_sessions_expire_at_their_absolute_limit_and_when_idle(
    make_app: AppFactory, people: dict[str, Any]
) -> None:
    short = make_app(session_absolute_seconds=1)
    sign_in(short, people["expert_token"])
    assert short.get("/api/v1/me").status_code == 200
    time.sleep(1.3)
    assert short.get("/api/v1/me").status_code == 401

    idle = make_app(session_idle_seconds=2)
    sign_in(idle, people["expert_token"])
    for _ in range(4):  # in use: 3 s in all, never 2 s without a request
        time.sleep(0.75)
        assert idle.get("/api/v1/me").status_code == 200
    time.sleep(2.3)
    assert idle.get("/api/v1/me").status_code == 401


def test_a_disabled_user_is_refused_everywhere(
    make_app: AppFactory, people: dict[str, Any]
) -> None:
    service, pool = people["service"], people["pool"]
    http = make_app()
    admin, expert = bearer(people["admin_token"]), bearer(people["expert_token"])
    session_id = sign_in(http, people["expert_token"])
    http.cookies.clear()
    name = people["expert"]
    disable = f"/api/v1/admin/users/{name}/disable"
    assert http.post(disable, headers=expert).status_code == 403  # experts may not
    assert http.post("/api/v1/admin/users/ghost-nobody/disable", headers=admin).status_code == 404
    own = http.post(f"/api/v1/admin/users/{people['admin']}/disable", headers=admin)
    assert own.status_code == 409  # an admin cannot lock themselves out
    assert http.post("/api/v1/admin/users/bad%20name/disable", headers=admin).status_code == 422

    done = http.post(disable, json={"reason": "left the lab"}, headers=admin)
    assert done.status_code == 200 and done.json() == {
        "name": name,
        "disabled": True,
        "changed": True,
    }
    assert http.post(disable, headers=admin).json()["changed"] is False  # idempotent
    [event] = audit(pool, "disable_user", name)
    assert event["actor"] == people["admin"] and event["reason"] == "left the lab"
    assert event["current"] == {"disabled": True, "sessions_revoked": 1}

    assert http.get("/api/v1/me", headers=expert).status_code == 401  # the token
    with_cookie(http, session_id)
    assert http.get("/api/v1/me").status_code == 401  # the session
    assert session_row(pool, session_id)["revoked_at"] is not None  # type: ignore[index]
    http.cookies.clear()
    assert http.post("/api/v1/session", json={"token": people["expert_token"]}).status_code == 401
    with pytest.raises(Unauthenticated):
        service.authenticate(people["expert_token"])

    class Metadata:  # what the gRPC servicer reads of its context
        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            return (("authorization", f"Bearer {people['expert_token']}"),)

    servicer = CurationServicer(service)
    request = curation_pb2.GetProgressRequest(campaign_id=str(uuid.uuid4()))
    with pytest.raises(Unauthenticated):
        asyncio.run(servicer.GetProgress(request, Metadata()))  # type: ignore[arg-type]

    # Enabled again: the token works, the revoked session stays revoked.
    enable = http.post(f"/api/v1/admin/users/{name}/enable", headers=admin)
    assert enable.status_code == 200 and enable.json()["changed"] is True
    assert http.get("/api/v1/me", headers=expert).status_code == 200
    assert service.authenticate(people["expert_token"]).name == name
    with_cookie(http, session_id)
    assert http.get("/api/v1/me").status_code == 401
    assert len(audit(pool, "enable_user", name)) == 1


def test_a_rotated_token_replaces_the_old_one(make_app: AppFactory, people: dict[str, Any]) -> None:
    http = make_app()
    name, old = people["expert"], people["expert_token"]
    session_id = sign_in(http, old)
    http.cookies.clear()
    rotate = f"/api/v1/admin/users/{name}/rotate-token"
    assert http.post(rotate, headers=bearer(old)).status_code == 403
    reply = http.post(rotate, headers=bearer(people["admin_token"]))
    assert reply.status_code == 200 and reply.headers["cache-control"] == "no-store"
    new = reply.json()["token"]
    assert new != old and len(new) >= 40
    assert http.get("/api/v1/me", headers=bearer(old)).status_code == 401
    assert http.get("/api/v1/me", headers=bearer(new)).json()["name"] == name
    with pytest.raises(Unauthenticated):
        people["service"].authenticate(old)
    with_cookie(http, session_id)  # opened with the old token: revoked with it
    assert http.get("/api/v1/me").status_code == 401
    http.cookies.clear()
    assert http.post("/api/v1/session", json={"token": old}).status_code == 401
    assert sign_in(http, new)
    [event] = audit(people["pool"], "rotate_token", name)
    assert new not in str(event) and event["current"] == {"sessions_revoked": 1}


def test_a_bootstrap_key_changed_in_the_settings_retires_the_old_key(
    make_app: AppFactory, people: dict[str, Any]
) -> None:
    """What a restart with a new MARROWSCOPE_CURATION_ADMIN_TOKEN does (ensure_user)."""
    service = people["service"]
    name, old, new = f"boot-{uuid.uuid4().hex[:8]}", f"old-{uuid.uuid4()}", f"new-{uuid.uuid4()}"
    service.ensure_user(name, "admin", old)
    http = make_app()
    session_id = sign_in(http, old)
    service.ensure_user(name, "admin", old)  # the same key again: nothing changes
    assert http.get("/api/v1/me").status_code == 200
    service.ensure_user(name, "admin", new)
    with pytest.raises(Unauthenticated):
        service.authenticate(old)
    assert service.authenticate(new).name == name
    assert http.get("/api/v1/me").status_code == 401  # its sessions went with the old key
    http.cookies.clear()
    assert http.get("/api/v1/me", headers=bearer(old)).status_code == 401
    assert http.get("/api/v1/me", headers=bearer(new)).status_code == 200
    assert session_row(people["pool"], session_id)["revoked_at"] is not None  # type: ignore[index]
    assert audit(people["pool"], "rekey_user", name)[0]["actor"] == "settings"
    # A restart does not bring back a user an admin disabled.
    service.set_disabled(service.authenticate(people["admin_token"]), name, True)
    service.ensure_user(name, "admin", new)
    with pytest.raises(Unauthenticated):
        service.authenticate(new)


def test_cross_origin_state_changes_are_refused(
    make_app: AppFactory, people: dict[str, Any]
) -> None:
    http = make_app()
    token = {"token": people["expert_token"]}
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "http://testserver.evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain is another origin
        {"Origin": "http://testserver", "Sec-Fetch-Site": "cross-site"},
    ):
        refused = http.post("/api/v1/session", json=token, headers=headers)
        assert refused.status_code == 403, headers
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["status"] == 403 and "cross-origin" in problem["detail"]
        assert "content-security-policy" in refused.headers
    assert COOKIE not in http.cookies  # nothing ran: no session was started

    # The app's own origin (default port or not), and browsers' navigations, work.
    for headers in (
        {"Origin": "http://testserver"},
        {"Origin": "http://testserver:80"},
        {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {},  # not a browser: neither header
    ):
        assert http.post("/api/v1/session", json=token, headers=headers).status_code == 200
    evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    for method, path in (
        ("DELETE", "/api/v1/session"),
        ("POST", "/api/v1/claims/release"),
        ("PUT", "/api/v1/session"),
        ("PATCH", "/api/v1/session"),
    ):
        assert http.request(method, path, headers=evil, json={}).status_code == 403, method
    assert http.get("/api/v1/me").status_code == 200  # still signed in: the DELETE never ran
    assert http.get("/api/v1/me", headers=evil).status_code == 200  # reads are not refused

    # Behind a TLS proxy the https origin is this site; a configured public origin is too.
    proxied = make_app(secure_cookies=True, public_origin="https://curation.lab.example/")
    for origin, status in (
        ("https://testserver", 200),
        ("https://curation.lab.example", 200),
        ("https://other.lab.example", 403),
    ):
        reply = proxied.post("/api/v1/session", json=token, headers={"Origin": origin})
        assert reply.status_code == status, origin


def test_every_response_carries_the_security_headers(
    make_app: AppFactory, people: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    http = make_app()
    expert = bearer(people["expert_token"])

    def boom(*args: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Workbench, "pace", boom)
    responses = {
        "ui": http.get("/ui/"),
        "script": http.get("/ui/app.js"),
        "health": http.get("/healthz"),
        "401": http.get("/api/v1/me"),
        "404": http.get("/nowhere"),
        "422": http.get("/ui/secrets.txt"),
        "500": http.get("/api/v1/me", headers=expert),
        "redirect": http.get("/", follow_redirects=False),
    }
    assert responses["500"].status_code == 500
    for what, reply in responses.items():
        csp = reply.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, what
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, what
        assert reply.headers.get("x-content-type-options") == "nosniff", what
        assert reply.headers.get("referrer-policy") == "no-referrer", what


def test_the_ui_needs_no_inline_script_or_style() -> None:
    """What the CSP allows is all the UI uses: its own script file, styles set through the
    CSSOM, and ids from the URL fragment checked before they go into an API path."""
    from importlib import resources

    ui = resources.files("marrowscope.curation") / "ui"
    html = (ui / "index.html").read_text()
    script = (ui / "app.js").read_text()
    assert "<script" in html and "<script>" not in html and "<style" not in html
    assert not re.search(r"\s(on[a-z]+|style)\s*=", html) and "javascript:" not in html
    assert 'setAttribute("style"' not in script and "innerHTML" not in script
    assert "queueId(campaignId)" in script and "${campaignId}" not in script


def test_api_docs_are_served_only_when_enabled(make_app: AppFactory) -> None:
    default = make_app()
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert default.get(path).status_code == 404, path
    docs = make_app(api_docs=True)
    paths = docs.get("/openapi.json").json()["paths"]
    assert "/api/v1/admin/users/{name}/rotate-token" in paths and "/api/v1/session" in paths
    page = docs.get("/docs")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

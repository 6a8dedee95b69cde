"""The LIS API's security, over real HTTP (uvicorn on loopback) against real PostgreSQL and a
real S3 endpoint: access tokens must carry their claims and be signed with a long secret;
clients can be disabled and their keys rotated, and neither their old keys nor their tokens
work after that; who reviewed and signed a report out is the authenticated client, recorded
in the report and the audit trail; every response carries the security headers and the
interactive docs are off unless enabled; request bodies over their limit are refused before
they are read."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from marrowscope.core.db import DictPool
from marrowscope.core.objectstore import ObjectStore, open_store
from marrowscope.core.settings import ObjectStoreSettings
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.lis_api.auth import TOKEN_AUDIENCE, TOKEN_ISSUER, bootstrap_id
from marrowscope.lis_api.middleware import API_CSP
from marrowscope.lis_api.repository import LisRepository
from marrowscope.lis_api.settings import LisApiSettings
from tests.conftest import free_port
from tests.integration.test_lis_api import ADMIN_KEY, auth, lis_app, png

pytestmark = pytest.mark.integration
SECRET = "a-test-signing-secret-of-more-than-32-bytes"


@contextmanager
def serving(app: FastAPI) -> Iterator[int]:
    """The app under uvicorn on a loopback port (lifespan and all); yields the port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(15)


@contextmanager
def served(
    db_pool: DictPool, store_settings: ObjectStoreSettings, **overrides: Any
) -> Iterator[httpx.Client]:
    """An HTTP client of the LIS API served on loopback (settings as in test_lis_api)."""
    overrides.setdefault("jwt_secret", SECRET)
    with (
        serving(lis_app(db_pool, store_settings, **overrides)) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        yield client


def register(http: httpx.Client, scopes: list[str], name: str = "lis") -> tuple[str, str]:
    """A new client (id, key), registered by the admin."""
    reply = http.post(
        "/v1/admin/clients", json={"name": name, "scopes": scopes}, headers=auth(ADMIN_KEY)
    )
    assert reply.status_code == 201, reply.text
    return reply.json()["id"], reply.json()["api_key"]


def token_for(http: httpx.Client, client_id: str, key: str, scope: str = "") -> str:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": key}
    reply = http.post("/v1/oauth/token", data={**form, "scope": scope} if scope else form)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["access_token"])


def events(db_pool: DictPool, entity: str, entity_id: str) -> list[dict[str, Any]]:
    with db_pool.connection() as conn:
        return conn.execute(
            """SELECT actor, action, previous, current, reason FROM audit_events
               WHERE entity = %s AND entity_id = %s ORDER BY id""",
            (entity, entity_id),
        ).fetchall()


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# --- 1. access tokens -----------------------------------------------------------------------
def test_tokens_carry_and_need_exp_iat_aud_sub(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
    with served(db_pool, s3_settings, token_ttl_s=600) as http:
        client_id, key = register(http, ["read"])
        issued = token_for(http, client_id, key)
        claims = jwt.decode(issued, SECRET, algorithms=["HS256"], audience=TOKEN_AUDIENCE)
        assert {"exp", "iat", "aud", "sub"} <= set(claims)
        assert claims["sub"] == client_id and claims["aud"] == TOKEN_AUDIENCE
        assert claims["exp"] - claims["iat"] == 600
        assert http.get("/v1/specimens", headers=auth(issued)).status_code == 200

        now = int(time.time())
        full = {
            "sub": client_id,
            "scope": "read",
            "iat": now,
            "exp": now + 60,
            "aud": TOKEN_AUDIENCE,
            "iss": TOKEN_ISSUER,
            "kv": claims["kv"],
        }
        made = jwt.encode(full, SECRET, algorithm="HS256")
        assert http.get("/v1/specimens", headers=auth(made)).status_code == 200  # the control
        for claim in ("exp", "iat", "aud", "sub"):
            token = jwt.encode({k: v for k, v in full.items() if k != claim}, SECRET, "HS256")
            reply = http.get("/v1/specimens", headers=auth(token))
            assert reply.status_code == 401, (claim, reply.text)
            assert f"'{claim}'" in reply.json()["detail"]
            assert reply.headers["content-type"] == "application/problem+json"
        # Claims the API needs beyond those: refused with 401, never a 500.
        for claim in ("scope", "kv"):
            token = jwt.encode({k: v for k, v in full.items() if k != claim}, SECRET, "HS256")
            assert http.get("/v1/specimens", headers=auth(token)).status_code == 401
        expired = jwt.encode({**full, "iat": now - 120, "exp": now - 60}, SECRET, "HS256")
        reply = http.get("/v1/specimens", headers=auth(expired))
        assert reply.status_code == 401 and "expired" in reply.json()["detail"]
        other_secret = jwt.encode(full, "another-secret-that-is-also-32-bytes-long", "HS256")
        assert http.get("/v1/specimens", headers=auth(other_secret)).status_code == 401


def test_a_short_signing_secret_is_refused_at_start(pg_dsn: str) -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        LisApiSettings(jwt_secret="s" * 31)
    assert LisApiSettings(jwt_secret="s" * 32).jwt_secret.get_secret_value() == "s" * 32
    assert len(LisApiSettings().jwt_secret.get_secret_value().encode()) >= 32  # the default
    with pytest.raises(ValidationError, match="digests of the keys"):
        LisApiSettings(api_key_hashes=["a-key-instead-of-its-digest"])
    started = subprocess.run(
        [sys.executable, "-m", "marrowscope.lis_api"],
        env={**os.environ, "MARROWSCOPE_DB_DSN": pg_dsn, "MARROWSCOPE_LIS_JWT_SECRET": "short"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0
    assert "MARROWSCOPE_LIS_JWT_SECRET is 5 bytes" in started.stderr
    assert "at least 32 bytes" in started.stderr and "Traceback" not in started.stderr


# --- 2. disabling clients and rotating keys -------------------------------------------------
def test_a_disabled_client_is_refused_with_its_key_and_its_tokens(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
    with served(db_pool, s3_settings) as http:
        client_id, key = register(http, ["read", "submit"])
        admin_id, admin_key = register(http, ["admin"], name="second admin")
        token = token_for(http, client_id, key)
        assert http.get("/v1/specimens", headers=auth(key)).status_code == 200
        assert http.get("/v1/specimens", headers=auth(token)).status_code == 200

        url = f"/v1/admin/clients/{client_id}/disable"
        assert http.post(url, headers=auth(key)).status_code == 403  # admin scope only
        assert (
            http.post(f"/v1/admin/clients/{admin_id}/disable", headers=auth(admin_key)).status_code
            == 409  # not itself
        )
        missing = http.post("/v1/admin/clients/c-nobody/disable", headers=auth(ADMIN_KEY))
        assert missing.status_code == 404
        disabled = http.post(url, json={"reason": "the LIS was retired"}, headers=auth(admin_key))
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["disabled"] and "api_key" not in disabled.json()
        for credential in (key, token):
            reply = http.get("/v1/specimens", headers=auth(credential))
            assert reply.status_code == 401, reply.text
            assert reply.headers["www-authenticate"] == "Bearer"
        form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": key}
        assert http.post("/v1/oauth/token", data=form).status_code == 401
        again = http.post(url, headers=auth(ADMIN_KEY))  # idempotent, not audited twice
        assert again.status_code == 200 and again.json()["disabled"]
        listed = {
            c["id"]: c
            for c in http.get("/v1/admin/clients", headers=auth(ADMIN_KEY)).json()["items"]
        }
        assert listed[client_id]["disabled"] and not listed[admin_id]["disabled"]
        assert not any("api_key" in c or "key_hash" in c for c in listed.values())
    [created, event] = events(db_pool, "api_client", client_id)
    assert created["action"] == "api_client.create"
    assert created["actor"] == f"lis-client:{bootstrap_id(digest(ADMIN_KEY))}"
    assert event["action"] == "api_client.disable" and event["actor"] == f"lis-client:{admin_id}"
    assert event["reason"] == "the LIS was retired" and event["current"] == {"disabled": True}


def test_after_a_rotation_the_old_key_and_its_tokens_are_refused(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
    with served(db_pool, s3_settings) as http:
        client_id, old_key = register(http, ["read"])
        old_token = token_for(http, client_id, old_key)
        url = f"/v1/admin/clients/{client_id}/rotate-key"
        assert http.post(url, headers=auth(old_key)).status_code == 403
        rotated = http.post(url, json={"reason": "key leaked"}, headers=auth(ADMIN_KEY))
        assert rotated.status_code == 200, rotated.text
        new_key = rotated.json()["api_key"]
        assert new_key != old_key and rotated.json()["key_generation"] == 2
        for credential in (old_key, old_token):
            reply = http.get("/v1/specimens", headers=auth(credential))
            assert reply.status_code == 401, reply.text
        assert "rotated" in http.get("/v1/specimens", headers=auth(old_token)).json()["detail"]
        form = {"grant_type": "client_credentials", "client_id": client_id}
        assert (
            http.post("/v1/oauth/token", data={**form, "client_secret": old_key}).status_code == 401
        )
        assert http.get("/v1/specimens", headers=auth(new_key)).status_code == 200
        new_token = token_for(http, client_id, new_key)
        assert http.get("/v1/specimens", headers=auth(new_token)).status_code == 200
        # The key is shown once: the client list does not show it.
        assert new_key not in http.get("/v1/admin/clients", headers=auth(ADMIN_KEY)).text
        # A disabled client is not given a new key; nor is one whose key is in the settings.
        http.post(f"/v1/admin/clients/{client_id}/disable", headers=auth(ADMIN_KEY))
        assert http.post(url, headers=auth(ADMIN_KEY)).status_code == 409
        settings_client = bootstrap_id(digest(ADMIN_KEY))
        refused = http.post(
            f"/v1/admin/clients/{settings_client}/rotate-key", headers=auth(ADMIN_KEY)
        )
        assert refused.status_code == 409 and "MARROWSCOPE_LIS_API_KEY_HASHES" in refused.text
    rotation = [e for e in events(db_pool, "api_client", client_id) if "rotate" in e["action"]]
    assert len(rotation) == 1 and rotation[0]["reason"] == "key leaked"
    assert rotation[0]["previous"] == {"key_generation": 1}
    assert rotation[0]["current"] == {"key_generation": 2}
    assert new_key not in json.dumps(rotation) and digest(new_key) not in json.dumps(rotation)


def test_a_key_removed_from_the_settings_stops_working(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
    first, second = f"first-{uuid.uuid4()}", f"second-{uuid.uuid4()}"
    with served(db_pool, s3_settings, extra_keys=[first, second]) as http:
        for key in (first, second):
            assert http.get("/v1/specimens", headers=auth(key)).status_code == 200
    # The operator replaces the first key in the settings (a rotation there) and restarts.
    with served(db_pool, s3_settings, extra_keys=[second]) as http:
        assert http.get("/v1/specimens", headers=auth(first)).status_code == 401
        assert http.get("/v1/specimens", headers=auth(second)).status_code == 200
        assert http.get("/v1/specimens", headers=auth(ADMIN_KEY)).status_code == 200
    removed = events(db_pool, "api_client", bootstrap_id(digest(first)))
    assert [e["action"] for e in removed] == ["api_client.create", "api_client.disable"]
    assert removed[1]["actor"] == "lis-api-settings" and "removed" in removed[1]["reason"]
    # Listed again, it works again; one an administrator disabled stays disabled.
    with served(db_pool, s3_settings, extra_keys=[first, second]) as http:
        assert http.get("/v1/specimens", headers=auth(first)).status_code == 200
        url = f"/v1/admin/clients/{bootstrap_id(digest(second))}/disable"
        assert http.post(url, headers=auth(ADMIN_KEY)).status_code == 200
        assert http.get("/v1/specimens", headers=auth(second)).status_code == 401
    with served(db_pool, s3_settings, extra_keys=[first, second]) as http:
        assert http.get("/v1/specimens", headers=auth(second)).status_code == 401
        assert http.get("/v1/specimens", headers=auth(first)).status_code == 200


# --- 3. who reviewed and signed out ---------------------------------------------------------
def analysed_specimen(
    db_pool: DictPool, http: httpx.Client, key: str, client_id: str
) -> tuple[str, list[str]]:
    """A specimen of the client with an analysis and its preliminary report (written as the
    worker would, the peers being down here); returns its id and the cell ids."""
    sid = http.post(
        "/v1/specimens",
        json={"accession_number": f"BM-S-{uuid.uuid4().hex[:8]}"},
        headers=auth(key),
    ).json()["id"]
    lis = LisRepository(db_pool)
    taxonomy = load_taxonomy("paper17")
    image = lis.add_image(sid, f"fields/{uuid.uuid4()}.png")
    job, _ = lis.create_job(client_id, sid, None)
    cells = [uuid.uuid4(), uuid.uuid4()]
    lis.record_image(
        job["id"],
        image["id"],
        [
            {
                "cell_id": cell,
                "object_key": f"cells/{cell}.png",
                "class_code": taxonomy.codes[0],
                "probability": 0.4,
                "margin": 0.1,
                "top_classes": [{"class_code": taxonomy.codes[0], "probability": 0.4}],
                "error": None,
                "model_version": "m-1",
                "algorithm_version": "stain-v3",
            }
            for cell in cells
        ],
    )
    body = {"low_confidence_cell_ids": [str(c) for c in cells], "images_analysed": 1}
    lis.add_report(sid, job["id"], "preliminary", body, actor=f"lis-analysis:{client_id}")
    return sid, [str(c) for c in cells]


def test_the_reviewer_recorded_is_the_authenticated_client(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
    with served(db_pool, s3_settings) as http:
        client_id, key = register(http, ["submit", "read", "review"])
        principal = f"lis-client:{client_id}"
        sid, cells = analysed_specimen(db_pool, http, key, client_id)
        code = load_taxonomy("paper17").codes[1]
        reviewed = http.post(
            f"/v1/specimens/{sid}/review",
            json={
                "reviewer": "dr-someone-else",
                "corrections": [{"cell_id": cells[0], "class_code": code}],
            },
            headers=auth(key),
        )
        assert reviewed.status_code == 201, reviewed.text
        body = reviewed.json()["body"]
        assert body["reviewed_by"] == principal and body["reviewer_stated"] == "dr-someone-else"
        assert "signed_out_by" not in body and reviewed.json()["status"] == "preliminary"
        # Signed out with an access token: the token's subject signs, the body names nobody.
        token = token_for(http, client_id, key, "review read")
        signed = http.post(
            f"/v1/specimens/{sid}/review", json={"sign_out": True}, headers=auth(token)
        )
        assert signed.status_code == 201, signed.text
        assert signed.json()["status"] == "final"
        assert signed.json()["body"]["signed_out_by"] == principal
        assert signed.json()["body"]["reviewed_by"] == principal
        assert "reviewer_stated" not in signed.json()["body"]
        versions = {
            v["version"]: v
            for v in http.get(f"/v1/specimens/{sid}/reports", headers=auth(key)).json()["versions"]
        }
        assert sorted(versions) == [1, 2, 3]
    with db_pool.connection() as conn:
        corrections = conn.execute(
            "SELECT reviewer FROM cell_corrections WHERE specimen_id = %s", (sid,)
        ).fetchall()
        reports = conn.execute(
            "SELECT id, version FROM reports WHERE specimen_id = %s ORDER BY version", (sid,)
        ).fetchall()
    assert [c["reviewer"] for c in corrections] == [principal]
    trail = {r["version"]: events(db_pool, "report", str(r["id"])) for r in reports}
    # Every version is an audit event; the sign-out one more, both by the client.
    assert [e["action"] for e in trail[1]] == ["report.version"]
    assert trail[1][0]["actor"] == f"lis-analysis:{client_id}"
    assert [(e["action"], e["actor"]) for e in trail[2]] == [("report.version", principal)]
    assert [(e["action"], e["actor"]) for e in trail[3]] == [
        ("report.version", principal),
        ("report.sign_out", principal),
    ]
    signed_out = trail[3][1]
    assert signed_out["current"]["status"] == "final" and signed_out["current"]["version"] == 3
    assert signed_out["previous"] == {"version": 2, "status": "preliminary"}
    assert re.fullmatch(r"[0-9a-f]{64}", signed_out["current"]["body_sha256"])


# --- 4. security headers and the docs ---------------------------------------------------
def security_headers_of(reply: httpx.Response) -> None:
    assert reply.headers["x-content-type-options"] == "nosniff", reply.request.url
    assert reply.headers["content-security-policy"] == API_CSP, reply.request.url
    assert reply.headers["x-frame-options"] == "DENY"
    assert reply.headers["cache-control"] == "no-store"


def test_every_response_has_the_security_headers_and_docs_are_off(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
    app = lis_app(db_pool, s3_settings, jwt_secret=SECRET)

    @app.get("/v1/test-internal-error", include_in_schema=False)
    async def fails() -> None:
        raise RuntimeError("a bug")

    with serving(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
        replies = {
            "ok": http.get("/v1/specimens", headers=auth(ADMIN_KEY)),
            "health": http.get("/healthz"),
            "schema": http.get("/openapi.json"),
            "unauthenticated": http.get("/v1/specimens"),
            "unknown_path": http.get("/nowhere"),
            "invalid": http.post("/v1/specimens", json={}, headers=auth(ADMIN_KEY)),
            "error": http.get("/v1/test-internal-error"),
            "docs": http.get("/docs"),
            "redoc": http.get("/redoc"),
        }
        for reply in replies.values():
            security_headers_of(reply)
        assert replies["ok"].status_code == replies["schema"].status_code == 200
        assert replies["docs"].status_code == replies["redoc"].status_code == 404
        for name in ("unauthenticated", "unknown_path", "invalid", "error"):
            problem = replies[name].json()
            assert replies[name].headers["content-type"] == "application/problem+json", name
            assert problem["status"] == replies[name].status_code and problem["detail"], name
        assert replies["error"].status_code == 500 and "a bug" not in replies["error"].text
        assert replies["error"].json()["request_id"]


def test_enabled_docs_load_their_assets_under_their_csp(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
    with served(db_pool, s3_settings, docs_enabled=True) as http:
        security_headers_of(http.get("/openapi.json"))
        for path in ("/docs", "/redoc"):
            page = http.get(path)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert page.headers["x-content-type-options"] == "nosniff"
            csp = dict(
                (part.split()[0], part.split()[1:])
                for part in page.headers["content-security-policy"].split("; ")
            )
            assert csp["frame-ancestors"] == ["'none'"] and csp["default-src"] == ["'none'"]
            scripts = re.findall(r'<script src="([^"]+)"', page.text)
            styles = re.findall(r'<link[^>]*(?:type="text/css"|rel="stylesheet")[^>]*>', page.text)
            assert scripts, path
            for url in scripts:
                assert origin(url) in csp["script-src"], (path, url)
            for tag in styles:
                href = re.search(r'href="([^"]+)"', tag)
                assert href and origin(href.group(1)) in csp["style-src"], (path, tag)
            if "<script>" in page.text:  # the page's own inline script
                assert "'unsafe-inline'" in csp["script-src"]
            # The page fetches the schema from here.
            assert "/openapi.json" in page.text and "'self'" in csp["connect-src"]


def origin(url: str) -> str:
    match = re.match(r"^(https?://[^/]+)", url)
    return match.group(1) if match else "'self'"


# --- 5. request body limits -------------------------------------------------------------
def raw_request(
    port: int, path: str, headers: dict[str, str], chunks: list[bytes] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A request over a plain socket: with ``chunks`` None the declared body is never sent
    (the answer has to come without it); else the chunks go as Transfer-Encoding: chunked."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", path)
        for name, value in headers.items():
            conn.putheader(name, value)
        if chunks is not None:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for chunk in chunks or []:
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        if chunks is not None:
            conn.send(b"0\r\n\r\n")
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def multipart(name: str, data: bytes, boundary: str = "b0undary") -> bytes:
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )


def test_bodies_over_the_limit_are_refused_before_they_are_read(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
    limits = {
        "max_body_bytes": 16_384,
        "max_upload_bytes": 20_000,
        "max_files_per_request": 1,
        "multipart_overhead_bytes": 4_096,
    }
    app = lis_app(db_pool, s3_settings, jwt_secret=SECRET, **limits)
    with serving(app) as port:
        json_headers = {**auth(ADMIN_KEY), "Content-Type": "application/json"}
        # Declared too large: 413 at once, though not one byte of the body was sent.
        status, headers, body = raw_request(
            port, "/v1/specimens", {**json_headers, "Content-Length": "10000000"}
        )
        assert status == 413 and headers["content-type"] == "application/problem+json"
        assert "16384 bytes" in json.loads(body)["detail"]
        assert headers["x-content-type-options"] == "nosniff"
        status, _, _ = raw_request(
            port,
            "/v1/specimens",
            {"Content-Length": "10000000"},  # before authentication too
        )
        assert status == 413
        # Chunked (no Content-Length): counted as it streams, cut at the limit.
        small = json.dumps({"accession_number": f"BM-C-{uuid.uuid4().hex[:6]}"}).encode()
        status, _, body = raw_request(port, "/v1/specimens", json_headers, [small[:10], small[10:]])
        assert status == 201, body
        padding = b" " * 4_096
        status, headers, body = raw_request(
            port,
            "/v1/specimens",
            json_headers,
            [b'{"accession_number": "BM-X"', *[padding] * 6, b"}"],
        )
        assert status == 413, body
        assert headers["content-type"] == "application/problem+json"
        # Uploads get room for their files (1 x 20,000 bytes + 4,096): a small image passes,
        # a chunked multipart body past that limit is cut while it is parsed.
        sid = json.loads(
            raw_request(
                port,
                "/v1/specimens",
                json_headers,
                [json.dumps({"accession_number": "BM-U"}).encode()],
            )[2]
        )["id"]
        upload = f"/v1/specimens/{sid}/images"
        form_headers = {**auth(ADMIN_KEY), "Content-Type": "multipart/form-data; boundary=b0undary"}
        image = multipart("f.png", png())
        status, _, body = raw_request(port, upload, form_headers, [image])
        assert status == 201, body
        big = multipart("big.png", b"\x89PNG" + b"0" * 30_000)
        status, headers, body = raw_request(
            port, upload, form_headers, [big[i : i + 4096] for i in range(0, len(big), 4096)]
        )
        assert status == 413 and "24096 bytes" in json.loads(body)["detail"], body
        status, _, _ = raw_request(port, upload, {**form_headers, "Content-Length": str(len(big))})
        assert status == 413
        # /v1/classify takes one field image: room for it, not just for max_body_bytes.
        mid = multipart("mid.png", b"\x89PNG" + b"0" * 18_000)  # over 16,384, under 24,096
        status, _, body = raw_request(port, "/v1/classify", form_headers, [mid])
        assert status != 413, body  # read and judged as an image (not one: 415)
        status, _, body = raw_request(
            port, "/v1/classify", {**form_headers, "Content-Length": str(len(big))}
        )
        assert status == 413 and "24096 bytes" in json.loads(body)["detail"], body
    images = LisRepository(db_pool).images(sid)
    assert len(images) == 1  # only the small one was kept


class RecordingStore:
    """An object store that records which calls were made, for which key."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, str(args[0]) if args else ""))
            return method(*args, **kwargs)

        return call


def test_a_presigned_upload_over_the_limit_is_refused_by_its_size_unread(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
    store = RecordingStore(open_store(s3_settings))
    with served(db_pool, s3_settings, store=store) as http:
        _, key = register(http, ["submit", "read"])
        sid = http.post(
            "/v1/specimens", json={"accession_number": "BM-P"}, headers=auth(key)
        ).json()["id"]
        ticket = http.post(f"/v1/specimens/{sid}/images/presigned", headers=auth(key)).json()
        request = urllib.request.Request(
            ticket["upload_url"],
            data=b"\x89PNG" + b"0" * 2_100_000,  # over max_upload_bytes (2,000,000)
            method="PUT",
            headers=ticket["headers"],
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        object_key = next(k for name, k in store.calls if name == "presign_put")
        done = http.post(ticket["complete_url"], headers=auth(key))
        assert done.status_code == 413, done.text
        assert done.headers["content-type"] == "application/problem+json"
        assert "2100004 bytes" in done.json()["detail"]
    on_key = [name for name, k in store.calls if k == object_key]
    assert "stat" in on_key and "get" not in on_key  # sized up, never read
    assert not store.inner.exists(object_key)  # and deleted

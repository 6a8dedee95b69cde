"""The LIS API against real PostgreSQL and a real S3 endpoint (moto over HTTP), with the
segmentation and inference services down: authentication on every route, object-level
authorization, uploads and their limits, idempotent analysis jobs that wait (and say why)
while a peer is down and survive an API restart. The full pipeline runs in the e2e tests."""

from __future__ import annotations

import hashlib
import io
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from marrowscope.core.clients import ServiceClients
from marrowscope.core.objectstore import open_store
from marrowscope.core.settings import PeerSettings
from marrowscope.lis_api.app import create_app
from marrowscope.lis_api.settings import LisApiSettings
from tests.conftest import free_port

pytestmark = pytest.mark.integration
ADMIN_KEY = "admin-key-for-tests"


def png(width: int = 64, height: int = 48) -> bytes:
    rng = np.random.default_rng(width * height)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def peers_down() -> ServiceClients:
    dead = f"127.0.0.1:{free_port()}"
    return ServiceClients(PeerSettings(segmentation_addr=dead, inference_addr=dead))


@contextmanager
def api(db_pool, store_settings, **overrides: Any) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = LisApiSettings(
        api_key_hashes=[hashlib.sha256(ADMIN_KEY.encode()).hexdigest()],
        segmentation_deadline_s=1.0,
        inference_deadline_s=1.0,
        max_upload_bytes=2_000_000,
        max_files_per_request=3,
        **overrides,
    )
    app = create_app(settings, open_store(store_settings), peers_down(), db_pool)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_client(http: TestClient, scopes: list[str]) -> str:
    reply = http.post(
        "/v1/admin/clients", json={"name": "lis", "scopes": scopes}, headers=auth(ADMIN_KEY)
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["api_key"])


def test_every_route_needs_credentials_and_the_right_scope(db_pool, s3_settings) -> None:  # type: ignore[no-untyped-def]
    with api(db_pool, s3_settings) as http:
        routes = [
            (m, r.path)
            for r in http.app.routes
            if getattr(r, "include_in_schema", False)
            for m in r.methods - {"HEAD", "OPTIONS"}
        ]
        assert len(routes) >= 15
        specimen = str(uuid.uuid4())
        for method, path in routes:
            url = path.format(
                specimen_id=specimen,
                image_id=uuid.uuid4(),
                job_id=uuid.uuid4(),
                cell_id=uuid.uuid4(),
            )
            if path == "/v1/oauth/token":
                reply = http.post(
                    url,
                    data={
                        "grant_type": "client_credentials",
                        "client_id": "x",
                        "client_secret": "wrong",
                    },
                )
            else:
                reply = http.request(method, url)
            assert reply.status_code == 401, (method, path, reply.status_code, reply.text)
            assert "traceback" not in reply.text.lower()
            if path != "/v1/oauth/token":
                assert http.request(method, url, headers=auth("not-a-key")).status_code == 401
        reader = new_client(http, ["read"])
        assert (
            http.post(
                "/v1/specimens", json={"accession_number": "A1"}, headers=auth(reader)
            ).status_code
            == 403
        )
        assert (
            http.post(
                "/v1/admin/clients", json={"name": "x", "scopes": ["read"]}, headers=auth(reader)
            ).status_code
            == 403
        )
        assert http.get(f"/v1/specimens/{specimen}/review", headers=auth(reader)).status_code == 403


def test_clients_see_only_their_own_specimens(db_pool, s3_settings) -> None:  # type: ignore[no-untyped-def]
    with api(db_pool, s3_settings) as http:
        alice, bob = (
            new_client(http, ["submit", "read", "review"]),
            new_client(http, ["submit", "read", "review"]),
        )
        created = http.post("/v1/specimens", json={"accession_number": "BM-1"}, headers=auth(alice))
        assert created.status_code == 201
        sid = created.json()["id"]
        again = http.post("/v1/specimens", json={"accession_number": "BM-1"}, headers=auth(alice))
        assert again.status_code == 200 and again.json()["id"] == sid
        uploaded = http.post(
            f"/v1/specimens/{sid}/images",
            files=[("files", ("f.png", png(), "image/png"))],
            headers=auth(alice),
        )
        assert uploaded.status_code == 201
        job = http.post(f"/v1/specimens/{sid}/analyses", headers=auth(alice)).json()["id"]
        for method, url in [
            ("GET", f"/v1/specimens/{sid}"),
            ("GET", f"/v1/specimens/{sid}/report"),
            ("GET", f"/v1/specimens/{sid}/reports"),
            ("GET", f"/v1/specimens/{sid}/review"),
            ("POST", f"/v1/specimens/{sid}/analyses"),
            ("POST", f"/v1/specimens/{sid}/images/presigned"),
            ("GET", f"/v1/analyses/{job}"),
        ]:
            reply = http.request(method, url, headers=auth(bob))
            assert reply.status_code == 404, (method, url, reply.status_code)
        reply = http.post(
            f"/v1/specimens/{sid}/images",
            files=[("files", ("f.png", png(), "image/png"))],
            headers=auth(bob),
        )
        assert reply.status_code == 404
        assert http.get("/v1/specimens", headers=auth(bob)).json()["items"] == []
        listed = http.get("/v1/specimens", headers=auth(alice)).json()["items"]
        assert [s["id"] for s in listed] == [sid]


def test_uploads_are_checked_before_anything_is_kept(db_pool, s3_settings) -> None:  # type: ignore[no-untyped-def]
    with api(db_pool, s3_settings) as http:
        key = new_client(http, ["submit", "read"])
        sid = http.post(
            "/v1/specimens", json={"accession_number": "BM-2"}, headers=auth(key)
        ).json()["id"]
        cases = [
            ([("files", ("a.txt", b"not an image at all", "image/png"))], 415),
            ([("files", ("big.png", b"\x89PNG" + b"0" * 2_100_000, "image/png"))], 413),
            ([("files", (f"{i}.png", png(), "image/png")) for i in range(4)], 413),
            (
                [
                    ("files", ("ok.png", png(), "image/png")),
                    ("files", ("bad.jpg", png()[:40], "image/jpeg")),
                ],
                415,
            ),
        ]
        for files, status in cases:
            reply = http.post(f"/v1/specimens/{sid}/images", files=files, headers=auth(key))
            assert reply.status_code == status, reply.text
        assert http.get(f"/v1/specimens/{sid}", headers=auth(key)).json()["images"] == []
        bad = http.post("/v1/specimens", json={"accession_number": "../../etc"}, headers=auth(key))
        assert bad.status_code == 422
        nothing = http.post(f"/v1/specimens/{sid}/analyses", headers=auth(key))
        assert nothing.status_code == 422 and "upload" in nothing.json()["detail"]


def test_presigned_upload_is_validated_on_completion(db_pool, s3_settings) -> None:  # type: ignore[no-untyped-def]
    with api(db_pool, s3_settings) as http:
        key = new_client(http, ["submit", "read"])
        sid = http.post(
            "/v1/specimens", json={"accession_number": "BM-3"}, headers=auth(key)
        ).json()["id"]
        for body, status in ((b"garbage bytes", 415), (png(80, 60), 200)):
            ticket = http.post(f"/v1/specimens/{sid}/images/presigned", headers=auth(key)).json()
            early = http.post(ticket["complete_url"], headers=auth(key))
            assert early.status_code == 409
            request = urllib.request.Request(
                ticket["upload_url"], data=body, method="PUT", headers=ticket["headers"]
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
            done = http.post(ticket["complete_url"], headers=auth(key))
            assert done.status_code == status, done.text
        images = http.get(f"/v1/specimens/{sid}", headers=auth(key)).json()["images"]
        stored = [i for i in images if i["state"] == "stored"]
        assert len(stored) == 1 and stored[0]["width"] == 80


def test_analysis_is_idempotent_waits_for_peers_and_survives_a_restart(
    db_pool, s3_settings
) -> None:  # type: ignore[no-untyped-def]
    with api(db_pool, s3_settings) as http:
        key = new_client(http, ["submit", "read"])
        sid = http.post(
            "/v1/specimens", json={"accession_number": "BM-4"}, headers=auth(key)
        ).json()["id"]
        http.post(
            f"/v1/specimens/{sid}/images",
            files=[("files", ("f.png", png(), "image/png"))],
            headers=auth(key),
        )
        headers = {**auth(key), "Idempotency-Key": "lis-order-77"}
        first = http.post(f"/v1/specimens/{sid}/analyses", headers=headers)
        retry = http.post(f"/v1/specimens/{sid}/analyses", headers=headers)
        assert first.status_code == retry.status_code == 202
        assert first.json()["id"] == retry.json()["id"]
        assert first.headers["location"] == f"/v1/analyses/{first.json()['id']}"
        job_url = first.headers["location"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            job = http.get(job_url, headers=auth(key)).json()
            if job["state"] == "waiting":
                break
            time.sleep(0.2)
        assert job["state"] == "waiting", job
        assert "segmentation service unavailable" in job["waiting_reason"]
        assert job["next_attempt_at"] and job["attempts"] >= 1
        report = http.get(f"/v1/specimens/{sid}/report", headers=auth(key))
        assert report.status_code == 404 and "no report yet" in report.json()["detail"]
    # A new API process (same database) still has the job and keeps retrying it.
    with api(db_pool, s3_settings) as http:
        job = http.get(job_url, headers=auth(key)).json()
        assert job["state"] in ("waiting", "running", "queued") and job["id"] == first.json()["id"]


def test_oauth_client_credentials_tokens_and_rate_limit(db_pool, s3_settings) -> None:  # type: ignore[no-untyped-def]
    with api(db_pool, s3_settings, rate_limit_per_s=1.0, rate_limit_burst=5) as http:
        created = http.post(
            "/v1/admin/clients",
            json={"name": "mw", "scopes": ["read", "submit"]},
            headers=auth(ADMIN_KEY),
        ).json()
        form = {
            "grant_type": "client_credentials",
            "client_id": created["id"],
            "client_secret": created["api_key"],
            "scope": "read",
        }
        token = http.post("/v1/oauth/token", data=form)
        assert token.status_code == 200, token.text
        jwt = token.json()["access_token"]
        assert http.get("/v1/specimens", headers=auth(jwt)).status_code == 200
        # The token carries only the scope asked for.
        assert (
            http.post(
                "/v1/specimens", json={"accession_number": "X"}, headers=auth(jwt)
            ).status_code
            == 403
        )
        assert http.post("/v1/oauth/token", data={**form, "scope": "admin"}).status_code == 403
        assert (
            http.post("/v1/oauth/token", data={**form, "client_secret": "nope"}).status_code == 401
        )
        tampered = jwt[:-4] + ("AAAA" if not jwt.endswith("AAAA") else "BBBB")
        assert http.get("/v1/specimens", headers=auth(tampered)).status_code == 401
        codes = [http.get("/v1/specimens", headers=auth(jwt)).status_code for _ in range(10)]
        assert 429 in codes
        limited = http.get("/v1/specimens", headers=auth(jwt))
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1

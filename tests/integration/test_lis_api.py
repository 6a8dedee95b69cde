"""The LIS API against real PostgreSQL and a real S3 endpoint (moto over HTTP), with the
segmentation and inference services down: authentication on every route, object-level
authorization, uploads and their limits, idempotent analysis jobs that wait (and say why)
while a peer is down and survive an API restart, and the review round trip with a stand-in
curation service. The full pipeline runs in the e2e tests."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from marrowscope.core.clients import ServiceClients
from marrowscope.core.db import DictPool
from marrowscope.core.objectstore import open_store
from marrowscope.core.settings import ObjectStoreSettings, PeerSettings
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.lis_api.app import create_app
from marrowscope.lis_api.report import Thresholds
from marrowscope.lis_api.repository import LisRepository
from marrowscope.lis_api.review import REVIEW_QUEUE_ID, CurationReview
from marrowscope.lis_api.settings import LisApiSettings
from marrowscope.v1 import curation_pb2
from tests.conftest import free_port
from tests.model_helpers import ensure_production

pytestmark = pytest.mark.integration
ADMIN_KEY = "admin-key-for-tests"


def png(width: int = 64, height: int = 48) -> bytes:
    rng = np.random.default_rng(width * height)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def peers_down() -> ServiceClients:
    dead = f"127.0.0.1:{free_port()}"
    return ServiceClients(
        PeerSettings(
            segmentation_addr=dead,
            inference_addr=dead,
            training_addr=dead,
            GRPC_ALLOW_PLAINTEXT=True,
        )
    )


def lis_app(db_pool: DictPool, store_settings: ObjectStoreSettings, **overrides: Any) -> FastAPI:
    """The LIS API with the test settings (``extra_keys``: bootstrap keys besides the
    admin's), its peers down."""
    extra_keys: list[str] = overrides.pop("extra_keys", [])
    store = overrides.pop("store", None) or open_store(store_settings)
    values: dict[str, Any] = {
        "segmentation_deadline_s": 1.0,
        "inference_deadline_s": 1.0,
        "max_upload_bytes": 2_000_000,
        "max_files_per_request": 3,
        **overrides,
    }
    settings = LisApiSettings(
        api_key_hashes=[hashlib.sha256(k.encode()).hexdigest() for k in [ADMIN_KEY, *extra_keys]],
        **values,
    )
    return create_app(settings, store, peers_down(), db_pool)


@contextmanager
def api(
    db_pool: DictPool, store_settings: ObjectStoreSettings, **overrides: Any
) -> Iterator[TestClient]:
    app = lis_app(db_pool, store_settings, **overrides)
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


def test_every_route_needs_credentials_and_the_right_scope(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
    with api(db_pool, s3_settings) as http:
        # Every documented operation (the schema, since included routers are not flattened
        # into app.routes).
        paths = http.get("/openapi.json").json()["paths"]
        routes = [(m.upper(), path) for path, operations in paths.items() for m in operations]
        assert len(routes) >= 15
        specimen = str(uuid.uuid4())
        for method, path in routes:
            url = path.format(
                specimen_id=specimen,
                image_id=uuid.uuid4(),
                job_id=uuid.uuid4(),
                cell_id=uuid.uuid4(),
                version="paper17-0000",
                name="scope-1",
                client_id="c-0000000000000000",
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


def test_clients_see_only_their_own_specimens(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
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


def test_uploads_are_checked_before_anything_is_kept(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
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
        one = [("files", ("ok.png", png(), "image/png"))]
        for nonsense in ("0", "-1", "40"):  # not a microscope's pixel size
            reply = http.post(
                f"/v1/specimens/{sid}/images?um_per_px={nonsense}", files=one, headers=auth(key)
            )
            assert reply.status_code == 422 and "um_per_px" in reply.text, reply.text
        assert http.get(f"/v1/specimens/{sid}", headers=auth(key)).json()["images"] == []
        given = http.post(f"/v1/specimens/{sid}/images?um_per_px=0.1", files=one, headers=auth(key))
        assert given.status_code == 201 and given.json()["images"][0]["um_per_px"] == 0.1
        images = http.get(f"/v1/specimens/{sid}", headers=auth(key)).json()["images"]
        assert [i["um_per_px"] for i in images] == [pytest.approx(0.1)]
        bad = http.post("/v1/specimens", json={"accession_number": "../../etc"}, headers=auth(key))
        assert bad.status_code == 422
        other = http.post(
            "/v1/specimens", json={"accession_number": "BM-2b"}, headers=auth(key)
        ).json()["id"]
        nothing = http.post(f"/v1/specimens/{other}/analyses", headers=auth(key))
        assert nothing.status_code == 422 and "upload" in nothing.json()["detail"]


def test_instrument_profiles_give_uploads_their_pixel_size(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
    with api(db_pool, s3_settings) as http:
        key = new_client(http, ["submit", "read"])
        profile = {"um_per_px": 0.12, "description": "scope 3, 100x oil, camera B"}
        denied = http.put("/v1/admin/instrument-profiles/scope-3", json=profile, headers=auth(key))
        assert denied.status_code == 403
        bad = http.put(
            "/v1/admin/instrument-profiles/scope-3",
            json={"um_per_px": 40},
            headers=auth(ADMIN_KEY),
        )
        assert bad.status_code == 422
        made = http.put(
            "/v1/admin/instrument-profiles/scope-3", json=profile, headers=auth(ADMIN_KEY)
        )
        assert made.status_code == 200 and made.json()["um_per_px"] == pytest.approx(0.12)
        listed = http.get("/v1/instrument-profiles", headers=auth(key)).json()["items"]
        assert "scope-3" in [p["name"] for p in listed]

        unknown = http.post(
            "/v1/specimens",
            json={"accession_number": "BM-7", "instrument_profile": "scope-9"},
            headers=auth(key),
        )
        assert unknown.status_code == 422 and "scope-3" in unknown.text  # names the known ones
        sid = http.post(
            "/v1/specimens",
            json={"accession_number": "BM-7", "instrument_profile": "scope-3"},
            headers=auth(key),
        ).json()["id"]
        one = [("files", ("ok.png", png(), "image/png"))]
        both = http.post(
            f"/v1/specimens/{sid}/images?um_per_px=0.1&instrument_profile=scope-3",
            files=one,
            headers=auth(key),
        )
        assert both.status_code == 422
        # The specimen's profile applies to an upload that names none; the upload's own wins.
        from_specimen = http.post(f"/v1/specimens/{sid}/images", files=one, headers=auth(key))
        image = from_specimen.json()["images"][0]
        assert image["um_per_px"] == pytest.approx(0.12)
        assert image["um_per_px_source"] == "instrument_profile:scope-3"
        other = [("files", ("other.png", png(90, 70), "image/png"))]
        own = http.post(f"/v1/specimens/{sid}/images?um_per_px=0.2", files=other, headers=auth(key))
        assert own.json()["images"][0]["um_per_px_source"] == "upload"
        # A later change of the profile does not rewrite images already stored.
        profile["um_per_px"] = 0.3
        http.put("/v1/admin/instrument-profiles/scope-3", json=profile, headers=auth(ADMIN_KEY))
        images = http.get(f"/v1/specimens/{sid}", headers=auth(key)).json()["images"]
        assert sorted(round(i["um_per_px"], 3) for i in images) == [0.12, 0.2]
    with db_pool.connection() as conn:
        events = conn.execute(
            "SELECT actor, previous FROM audit_events WHERE entity = 'instrument_profile' "
            "AND entity_id = 'scope-3' ORDER BY id"
        ).fetchall()
    assert len(events) == 2 and events[0]["previous"] is None
    assert events[1]["previous"]["um_per_px"] == pytest.approx(0.12)


def test_presigned_upload_is_validated_on_completion(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
    with api(db_pool, s3_settings) as http:
        key = new_client(http, ["submit", "read"])
        sid = http.post(
            "/v1/specimens", json={"accession_number": "BM-3"}, headers=auth(key)
        ).json()["id"]
        for body, status in ((b"garbage bytes", 415), (png(80, 60), 200)):
            ticket = http.post(
                f"/v1/specimens/{sid}/images/presigned?um_per_px=0.15", headers=auth(key)
            ).json()
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
        assert stored[0]["um_per_px"] == pytest.approx(0.15)  # chosen with the ticket


def test_model_admin_needs_the_admin_scope_and_says_when_training_is_down(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
    with api(db_pool, s3_settings) as http:
        reader = new_client(http, ["read", "submit"])
        promote = {"reason": "validated"}
        denied = http.post("/v1/admin/models/v1/promote", json=promote, headers=auth(reader))
        assert denied.status_code == 403
        missing_reason = http.post("/v1/admin/models/v1/promote", json={}, headers=auth(ADMIN_KEY))
        assert missing_reason.status_code == 422
        down = http.post("/v1/admin/models/v1/promote", json=promote, headers=auth(ADMIN_KEY))
        assert down.status_code == 503 and "training service unavailable" in down.json()["detail"]


def test_analysis_is_idempotent_waits_for_peers_and_survives_a_restart(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
    production = ensure_production(db_pool, open_store(s3_settings))
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
        with db_pool.connection() as conn:  # the job pinned the production version
            row = conn.execute(
                "SELECT model_version_id FROM analysis_jobs WHERE id = %s", (job["id"],)
            ).fetchone()
        assert row is not None and str(row["model_version_id"]) == production.id
        assert job["next_attempt_at"] and job["attempts"] >= 1
        report = http.get(f"/v1/specimens/{sid}/report", headers=auth(key))
        assert report.status_code == 404 and "no report yet" in report.json()["detail"]
    # A new API process (same database) still has the job and keeps retrying it.
    with api(db_pool, s3_settings) as http:
        job = http.get(job_url, headers=auth(key)).json()
        assert job["state"] in ("waiting", "running", "queued") and job["id"] == first.json()["id"]


def test_oauth_client_credentials_tokens_and_rate_limit(
    db_pool: DictPool, s3_settings: ObjectStoreSettings
) -> None:
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


class FakeCuration:
    """The curation service's requester-side RPCs, recording what the LIS API asks."""

    def __init__(self) -> None:
        self.created: list[curation_pb2.CreateReviewTasksRequest] = []
        self.listed: list[curation_pb2.ListDecisionsRequest] = []
        self.metadata: list[Any] = []
        self.decisions: list[curation_pb2.Decision] = []

    async def _reply(self, reply: Any) -> Any:
        return reply

    # Named like the generated stub's methods; each returns an awaitable, as they do.
    def CreateReviewTasks(
        self, request: curation_pb2.CreateReviewTasksRequest, metadata: Any, timeout: float
    ) -> Any:
        self.created.append(request)
        self.metadata.append(metadata)
        return self._reply(curation_pb2.CreateReviewTasksResponse(created=len(request.tasks)))

    def ListDecisions(
        self, request: curation_pb2.ListDecisionsRequest, metadata: Any, timeout: float
    ) -> Any:
        self.listed.append(request)
        return self._reply(curation_pb2.ListDecisionsResponse(decisions=self.decisions))

    def GetProgress(
        self, request: curation_pb2.GetProgressRequest, metadata: Any, timeout: float
    ) -> Any:
        return self._reply(curation_pb2.ProgressCount(round_id=request.round_id))


def test_low_confidence_cells_go_to_the_lis_review_queue_and_labels_come_back(
    db_pool: DictPool,
) -> None:
    """The review round trip names the LIS API's own queue (created by curation from the
    request) and the job as its batch; nothing is written outside the LIS API's tables."""
    lis = LisRepository(db_pool)
    taxonomy = load_taxonomy("paper17")
    specimen, _ = lis.create_specimen(
        "c-review", f"BM-R-{uuid.uuid4().hex[:8]}", "peripheral-blood"
    )
    image = lis.add_image(specimen["id"], f"fields/{uuid.uuid4()}.png")
    job, _ = lis.create_job("c-review", specimen["id"], None)
    unsure, sure = uuid.uuid4(), uuid.uuid4()
    lis.record_image(
        job["id"],
        image["id"],
        [
            {
                "cell_id": cell,
                "object_key": f"cells/{cell}.png",
                "class_code": taxonomy.codes[0],
                "probability": probability,
                "margin": probability / 2,
                "top_classes": [{"class_code": taxonomy.codes[0], "probability": probability}],
                "error": None,
                "model_version": "m-1",
                "algorithm_version": "stain-v3",
            }
            for cell, probability in ((unsure, 0.3), (sure, 0.99))
        ],
    )
    body = {"low_confidence_cell_ids": [str(unsure)], "images_analysed": 1}
    lis.add_report(
        specimen["id"], job["id"], "preliminary", body, review_state="pending", actor="test"
    )

    curation = FakeCuration()
    clients = SimpleNamespace(curation=curation)
    review = CurationReview(lis, clients, "svc-token", taxonomy, Thresholds())  # type: ignore[arg-type]  # a stub for ServiceClients
    asyncio.run(review.sync_once())

    [request] = [r for r in curation.created if r.round_id == str(job["id"])]
    assert request.campaign_id == str(REVIEW_QUEUE_ID)
    assert request.queue.kind == "LIS_REVIEW" and request.queue.taxonomy == "paper17"
    assert request.queue.name and request.queue.dataset == ""
    assert request.requester == curation_pb2.BATCH_REQUESTER_ANALYSIS_JOB
    assert request.round_number == 0
    assert [t.cell_id for t in request.tasks] == [str(unsure)]
    assert request.tasks[0].kind == curation_pb2.TASK_KIND_AL
    assert curation.metadata[0] == (("authorization", "Bearer svc-token"),)
    assert lis.job("c-review", str(job["id"]))["review_state"] == "sent"

    # An expert labels the cell in curation: a correction and report version 2, review done.
    curation.decisions = [
        curation_pb2.Decision(
            id=str(uuid.uuid4()),
            cell_id=str(unsure),
            class_code=taxonomy.codes[1],
            user="expert-1",
        )
    ]
    asyncio.run(review.sync_once())
    assert any(
        r.campaign_id == str(REVIEW_QUEUE_ID) and r.round_id == str(job["id"])
        for r in curation.listed
    )
    latest = lis.report(specimen["id"])
    assert latest is not None and latest["version"] == 2
    assert latest["body"]["reviewed_by"] == "expert-1"  # as curation authenticated them
    with db_pool.connection() as conn:
        event = conn.execute(
            "SELECT actor, current FROM audit_events WHERE action = 'report.version' "
            "AND entity_id = %s",
            (str(latest["id"]),),
        ).fetchone()
    assert event is not None and event["actor"] == "curation:expert-1"
    assert event["current"]["version"] == 2
    assert lis.job("c-review", str(job["id"]))["review_state"] == "done"


class CurationStillReviewing(FakeCuration):
    """Curation with one task of the batch still open, so the LIS API keeps collecting."""

    def GetProgress(
        self, request: curation_pb2.GetProgressRequest, metadata: Any, timeout: float
    ) -> Any:
        return self._reply(curation_pb2.ProgressCount(round_id=request.round_id, open=1))


def test_an_undo_in_curation_takes_the_correction_out_of_the_report(db_pool: DictPool) -> None:
    lis = LisRepository(db_pool)
    taxonomy = load_taxonomy("paper17")
    specimen, _ = lis.create_specimen("c-undo", f"BM-U-{uuid.uuid4().hex[:8]}", "peripheral-blood")
    image = lis.add_image(specimen["id"], f"fields/{uuid.uuid4()}.png")
    job, _ = lis.create_job("c-undo", specimen["id"], None)
    cell = uuid.uuid4()
    model_class, expert_class = taxonomy.codes[0], taxonomy.codes[1]
    lis.record_image(
        job["id"],
        image["id"],
        [
            {
                "cell_id": cell,
                "object_key": f"cells/{cell}.png",
                "class_code": model_class,
                "probability": 0.3,
                "margin": 0.1,
                "top_classes": [{"class_code": model_class, "probability": 0.3}],
                "error": None,
                "model_version": "m-1",
                "algorithm_version": "stain-v3",
            }
        ],
    )
    body = {"low_confidence_cell_ids": [str(cell)], "images_analysed": 1}
    lis.add_report(
        specimen["id"], job["id"], "preliminary", body, review_state="pending", actor="test"
    )
    curation = CurationStillReviewing()
    review = CurationReview(lis, SimpleNamespace(curation=curation), "svc", taxonomy, Thresholds())  # type: ignore[arg-type]  # a stub for ServiceClients
    asyncio.run(review.sync_once())  # sends the task
    decision = curation_pb2.Decision(
        id=str(uuid.uuid4()), cell_id=str(cell), class_code=expert_class, user="expert-1"
    )
    curation.decisions = [decision]
    asyncio.run(review.sync_once())
    corrected = lis.report(specimen["id"])
    assert corrected is not None and corrected["version"] == 2

    def counted_as(report: dict[str, Any]) -> dict[str, int]:
        rows = [*report["body"]["differential"], *report["body"]["excluded_from_differential"]]
        return {r["code"]: r["count"] for r in rows if r["count"]}

    assert counted_as(corrected).get(expert_class) == 1 and model_class not in counted_as(corrected)
    # The expert undoes the decision in curation: the next version counts the model's class.
    decision.undone = True
    asyncio.run(review.sync_once())
    reverted = lis.report(specimen["id"])
    assert reverted is not None and reverted["version"] == 3
    assert counted_as(reverted).get(model_class) == 1 and expert_class not in counted_as(reverted)
    assert reverted["body"]["cells_corrected"] == 0
    # Version 2 still reads as it was built (its corrections as of then).
    cells_then = lis.classified_cells(specimen["id"], job["id"], corrected["created_at"])
    assert [c.class_code for c in cells_then] == [expert_class]
    asyncio.run(review.sync_once())  # nothing new: no further version
    latest = lis.report(specimen["id"])
    assert latest is not None and latest["version"] == 3

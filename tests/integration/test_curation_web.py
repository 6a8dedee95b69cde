"""The curation HTTP API (what the web UI and other UI clients use) on real PostgreSQL and a
folder object store: sign-in cookie vs bearer token, assignments, per-decision results and
idempotent retries, thumbnails sized by the server, references, and the 4xx paths."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from marrowscope.core import cell_registry
from marrowscope.core.clients import ServiceClients
from marrowscope.core.objectstore import open_store
from marrowscope.core.settings import ObjectStoreSettings, PeerSettings
from marrowscope.curation.service import (
    CurationService,
    NewTask,
    QueueInfo,
    ReviewBatchRequest,
    User,
)
from marrowscope.curation.web import create_web_app
from marrowscope.curation.workbench import Workbench
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def crop_png(seed: int) -> bytes:
    rgb = np.zeros((282, 282, 3), np.uint8)
    rgb[100:180, 100:180] = np.random.default_rng(seed).integers(0, 255, 3)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "PNG")
    return out.getvalue()


@pytest.fixture()
def web(db_pool, tmp_path):  # type: ignore[no-untyped-def]
    store = open_store(ObjectStoreSettings(root=tmp_path / "store"))
    service = CurationService(db_pool)
    campaign, round_id, dataset = uuid.uuid4(), uuid.uuid4(), f"web-{uuid.uuid4().hex[:6]}"
    cells: list[tuple[str, str]] = []  # (cell id, object key)
    with db_pool.connection() as conn:
        for i in range(8):
            key = store.put_bytes(f"cells/{dataset}-{i}.png", crop_png(i), "image/png").key
            cell_id, _ = cell_registry.register_cell(
                conn,
                cell_registry.NewCell(
                    origin_key=f"t:{dataset}:{i}", object_key=key, sha256="x", dataset=dataset
                ),
            )
            cell_registry.add_labels(
                conn,
                [
                    cell_registry.NewLabel(
                        cell_id=cell_id,
                        taxonomy="paper17",
                        class_code="MC" if i % 2 else "MMC",
                        source="import",
                    )
                ],
            )
            cells.append((cell_id, key))
    tasks = [NewTask(c, key, "CST", "SEG", [("SEG", 0.97), ("BAND", 0.02)]) for c, key in cells[:5]]
    tasks += [NewTask(c, key, "AL", "", [("MC", 0.5), ("MMC", 0.4)]) for c, key in cells[5:]]
    batch = ReviewBatchRequest(
        queue_id=str(campaign),
        batch_id=str(round_id),
        requester="campaign_round",
        round_number=1,
        queue=QueueInfo(name="web", kind="CST_AL", taxonomy="paper17", dataset=dataset),
    )
    service.create_tasks(User("orchestrator", "service"), batch, tasks)
    admin_token, expert_token = f"adm-{uuid.uuid4()}", f"exp-{uuid.uuid4()}"
    service.ensure_user(f"admin-{admin_token[4:10]}", "admin", admin_token)
    expert = f"expert-{expert_token[4:10]}"
    service.ensure_user(expert, "expert", expert_token)
    peers = PeerSettings(
        orchestrator_addr=f"127.0.0.1:{free_port()}", GRPC_ALLOW_PLAINTEXT=True
    )  # down: admin pages say so
    app = create_web_app(service, Workbench(db_pool, service), store, ServiceClients(peers))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield {
            "client": client,
            "campaign": str(campaign),
            "round": str(round_id),
            "admin": admin_token,
            "expert": expert_token,
            "expert_name": expert,
        }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_session_cookie_claims_decisions_and_retries(web) -> None:  # type: ignore[no-untyped-def]
    http, campaign = web["client"], web["campaign"]
    assert http.get("/api/v1/me").status_code == 401
    assert http.post("/api/v1/session", json={"token": "wrong-token"}).status_code == 401
    signed = http.post("/api/v1/session", json={"token": web["expert"]})
    assert signed.status_code == 200 and "httponly" in signed.headers["set-cookie"].lower()
    assert "samesite=strict" in signed.headers["set-cookie"].lower()
    assert http.get("/api/v1/me").json()["name"] == web["expert_name"]  # the cookie is enough

    claim = http.post(f"/api/v1/campaigns/{campaign}/claims", json={"kind": "CST"}).json()
    assert claim["proposed_class"] == "SEG" and len(claim["tasks"]) == 5
    again = http.post(f"/api/v1/campaigns/{campaign}/claims", json={"kind": "CST"}).json()
    assert [t["id"] for t in again["tasks"]] == [
        t["id"] for t in claim["tasks"]
    ]  # held, after a reload

    image = http.get(claim["tasks"][0]["image_url"], params={"size": 96})
    assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).size == (96, 96)
    assert http.get(claim["tasks"][0]["image_url"], params={"size": 5000}).status_code == 422

    first, second = claim["tasks"][:2]
    batch = {
        "decisions": [
            {"client_decision_id": "cd-000001", "task_id": first["id"], "action": "confirm"},
            {
                "client_decision_id": "cd-000002",
                "task_id": second["id"],
                "action": "correct",
                "class_code": "NOPE",
            },
        ]
    }
    results = http.post("/api/v1/decisions", json=batch).json()["results"]
    assert [r["ok"] for r in results] == [True, False] and results[1]["status"] == 422
    retry = http.post("/api/v1/decisions", json=batch).json()["results"]
    assert retry[0]["decision_id"] == results[0]["decision_id"]  # the same decision, not a second
    undone = http.post("/api/v1/decisions/cd-000001/undo", json={})
    assert undone.status_code == 200 and undone.json()["undone"] is True
    assert http.post("/api/v1/decisions/cd-missing/undo", json={}).status_code == 404
    pace = http.get("/api/v1/me").json()["pace"]
    assert pace["last_10_min"] == 1 and pace["total"] == 1

    refs = http.get(
        f"/api/v1/campaigns/{campaign}/references", params={"classes": "MC,MMC,EO"}
    ).json()
    assert len(refs["references"]["MC"]) == 4 and refs["references"]["EO"] == []
    assert http.get(refs["references"]["MC"][0]).status_code == 200
    keys = {
        c["code"]: c["hotkey"] for c in http.get("/api/v1/taxonomies/paper17").json()["classes"]
    }
    assert keys["PEB_BEB"] == "1" and len(set(keys.values())) == 17


def test_assignments_limit_who_sees_a_campaign_and_admin_pages(web) -> None:  # type: ignore[no-untyped-def]
    http, campaign = web["client"], web["campaign"]
    expert, admin = bearer(web["expert"]), bearer(web["admin"])
    listed = {c["id"]: c for c in http.get("/api/v1/campaigns", headers=expert).json()["campaigns"]}
    assert campaign in listed  # nobody assigned: open to every expert
    assert {k: listed[campaign][k] for k in ("name", "method", "state", "open_cst", "open_al")} == {
        "name": "web",
        "method": "CST_AL",
        "state": "open",
        "open_cst": 5,
        "open_al": 3,
    }
    rows = http.get(f"/api/v1/campaigns/{campaign}/progress", headers=expert).json()["rows"]
    assert {(r["round_id"], r["kind"], r["open"]) for r in rows} == {
        (web["round"], "CST", 5),
        (web["round"], "AL", 3),
    }
    assert (
        http.post(
            f"/api/v1/admin/campaigns/{campaign}/assignments",
            json={"user": "someone-else"},
            headers=expert,
        ).status_code
        == 403
    )
    assert (
        http.post(
            f"/api/v1/admin/campaigns/{campaign}/assignments", json={"user": "ghost"}, headers=admin
        ).status_code
        == 404
    )
    http.post(
        "/api/v1/admin/users",
        json={"name": f"other-{campaign[:6]}", "role": "expert"},
        headers=admin,
    )
    assigned = http.post(
        f"/api/v1/admin/campaigns/{campaign}/assignments",
        json={"user": f"other-{campaign[:6]}"},
        headers=admin,
    )
    assert assigned.json()["assigned"] == [f"other-{campaign[:6]}"]
    visible = [c["id"] for c in http.get("/api/v1/campaigns", headers=expert).json()["campaigns"]]
    assert campaign not in visible
    assert (
        http.post(
            f"/api/v1/campaigns/{campaign}/claims", json={"kind": "AL"}, headers=expert
        ).status_code
        == 404
    )
    down = http.get("/api/v1/admin/campaigns", headers=admin)
    assert down.status_code == 503 and "orchestrator unavailable" in down.json()["detail"]
    assert http.get("/api/v1/admin/campaigns", headers=expert).status_code == 403
    ui = http.get("/ui/")
    assert ui.status_code == 200 and "/ui/app.js" in ui.text
    assert (
        http.get("/ui/app.js").status_code == 200 and http.get("/ui/secrets.txt").status_code == 422
    )

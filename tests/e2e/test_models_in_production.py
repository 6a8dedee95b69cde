"""Experiments cannot touch the clinical model, on the whole local stack: a new version is
trained and evaluated while production (the first-start demo model) keeps serving the LIS; an
11-class model is refused for production; a promotion during an analysis job does not mix
versions in it; a restarted inference service serves production; a rollback returns."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

import grpc
import psycopg
import pytest
from PIL import Image

from marrowscope.cli import stack
from marrowscope.cli.datasets import import_synthetic
from marrowscope.cli.main import main
from marrowscope.core.clients import ServiceClients
from marrowscope.core.db import open_pool
from marrowscope.core.images import encode_png
from marrowscope.core.settings import DatabaseSettings
from marrowscope.core.synthetic import iter_cells, make_cell
from marrowscope.v1 import inference_pb2, orchestrator_pb2

from ..model_helpers import register_placeholder
from ..stack_helpers import field_jpeg, finish_campaign, lis_client, start_campaign

pytestmark = pytest.mark.e2e


def served_production(ctx: dict, expected: str) -> None:
    """Wait until the inference service serves ``expected`` as production (it re-reads an
    alias within seconds; a restarted service may still be starting)."""

    async def ask() -> str:
        clients = ServiceClients(ctx["peers"])
        name = ""
        try:
            for _ in range(60):
                try:
                    reply = await clients.inference.GetServingModel(
                        inference_pb2.GetServingModelRequest(), timeout=10
                    )
                    name = str(reply.model.name)
                    if name == expected:
                        break
                except grpc.aio.AioRpcError:  # UNAVAILABLE while it starts
                    pass
                await asyncio.sleep(0.25)
            return name
        finally:
            await clients.close()

    assert asyncio.run(ask()) == expected


def analyse(
    ctx: dict, accession: str, images: int, on_pinned: object = None
) -> tuple[dict, str, str]:
    """(report body, pinned version name, specimen id) of a new specimen's analysis;
    ``on_pinned`` runs once the job has pinned its model and before it ends, when the job is
    slow enough."""
    with lis_client(ctx) as client:
        sid = client.post("/v1/specimens", json={"accession_number": accession}).json()["id"]
        files = [
            ("files", (f"f{i}.jpg", field_jpeg(i, seed=9), "image/jpeg")) for i in range(images)
        ]
        assert client.post(f"/v1/specimens/{sid}/images", files=files).status_code == 201
        job_url = client.post(f"/v1/specimens/{sid}/analyses").headers["location"]
        job_id = job_url.rsplit("/", 1)[-1]
        pinned = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with psycopg.connect(ctx["dsn"]) as conn:
                row = conn.execute(
                    """SELECT v.name FROM analysis_jobs j JOIN model_versions v
                       ON v.id = j.model_version_id WHERE j.id = %s""",
                    (job_id,),
                ).fetchone()
            if row and pinned is None:
                pinned = row[0]
                if callable(on_pinned):
                    on_pinned()
            job = client.get(job_url).json()
            if job["state"] in ("succeeded", "failed"):
                break
            time.sleep(0.1)
        assert job["state"] == "succeeded", job
        assert pinned is not None
        with psycopg.connect(ctx["dsn"]) as conn:
            used = {
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT model_version FROM analysis_cells WHERE job_id = %s",
                    (job_id,),
                )
            }
        assert used == {pinned}, used  # one version for every cell of the job
        return client.get(f"/v1/specimens/{sid}/report").json()["body"], pinned, sid


def test_experiments_cannot_touch_the_production_model(
    running_stack: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx, home = running_stack, str(running_stack["paths"].home)
    demo = ctx["model"]
    served_production(ctx, demo)

    # ML staff train and evaluate a new version: production does not move.
    data = tmp_path / "cells"
    for code in ("LY", "EO", "MB"):
        (data / code).mkdir(parents=True)
        for i in range(10):
            (data / code / f"{i}.png").write_bytes(encode_png(make_cell(code, i).rgb))
    train = ["train", "--data", str(data), "--epochs", "2", "--image-size", "32", "--width", "4"]
    assert main(["--home", home, *train]) == 0
    new_id = capsys.readouterr().out.strip().splitlines()[-1].split()[3]
    assert main(["--home", home, "models", "show", new_id]) == 0
    new = json.loads(capsys.readouterr().out)["name"]
    assert main(["--home", home, "evaluate", "--model", new, "--data", str(data)]) == 0
    capsys.readouterr()
    served_production(ctx, demo)

    # An 11-class model cannot serve the LIS: refused, naming what is missing.
    pool = open_pool(DatabaseSettings(dsn=ctx["dsn"], pool_max_size=1))
    try:
        pbc = register_placeholder(pool, ctx["store"], taxonomy="pbc11")
    finally:
        pool.close()
    assert main(["--home", home, "models", "promote", pbc.name, "--reason", "try"]) == 2
    refusal = capsys.readouterr().err
    assert "pbc11" in refusal and "lacks" in refusal and "paper17" in refusal

    # The gate: on a locked evaluation set the two-epoch model is worse than production.
    async def import_evaluation_set() -> None:
        clients = ServiceClients(ctx["peers"])
        try:
            cells = iter_cells(4, seed=21)
            await import_synthetic(cells, 4 * 17, "lab-eval", ctx["store"], clients)
        finally:
            await clients.close()

    asyncio.run(import_evaluation_set())
    lock = ["models", "evaluation-set", "lab-eval", "--reason", "held out"]
    assert main(["--home", home, *lock]) == 0
    assert "lab-eval (paper17, 68 cells): locked" in capsys.readouterr().out
    assert main(["--home", home, "models", "promote", new, "--reason", "validated"]) == 2
    refusal = capsys.readouterr().err
    assert "worse than" in refusal and "lab-eval" in refusal and "macro-F1" in refusal
    served_production(ctx, demo)

    # A forced promotion while a job runs: the job keeps the version it pinned at its start.
    def promote() -> None:
        force = ["--force", "--reason", "known regression, accepted for this test"]
        assert main(["--home", home, "models", "promote", new, *force]) == 0

    body, pinned, sid = analyse(ctx, "BM-PROMOTE-1", images=3, on_pinned=promote)
    assert "[forced]" in capsys.readouterr().out
    assert pinned == demo and body["model_version"] == demo and body["model_demo"]
    assert "DEMO_MODEL" in {f["code"] for f in body["flags"]}
    served_production(ctx, new)
    # The report is reproduced from its stored crops with its recorded version, not production.
    with lis_client(ctx) as client:
        recheck = client.get(f"/v1/specimens/{sid}/report/recheck").json()
    assert recheck["model_version"] == demo and recheck["counts_identical"], recheck
    assert recheck["cells_changed"] == 0 and recheck["cells_reclassified"] > 0
    assert recheck["model_artifact_sha256"] == body["model_artifact_sha256"]
    after, pinned_after, _ = analyse(ctx, "BM-PROMOTE-2", images=1)
    assert pinned_after == new and after["model_version"] == new and not after["model_demo"]
    assert "DEMO_MODEL" not in {f["code"] for f in after["flags"]}

    # A restart serves production (not the newest version: the pbc11 placeholder is newer).
    stack.restart_service(ctx["paths"], "inference")
    served_production(ctx, new)

    # Rollback through the LIS admin API: the actor is the authenticated client.
    with lis_client(ctx) as client:
        back = client.post("/v1/admin/models/rollback", json={"reason": "back to the demo"})
    assert back.status_code == 200, back.text
    change = back.json()
    assert change["version"] == demo and change["previous_version"] == new
    assert change["action"] == "rollback" and change["actor"].startswith("lis-client:")
    served_production(ctx, demo)
    capsys.readouterr()
    assert main(["--home", home, "models", "list", "--json"]) == 0
    listed = {v["name"]: v for v in json.loads(capsys.readouterr().out)}
    assert listed[demo]["aliases"] == ["production"] and listed[demo]["demo"]
    assert listed[new]["aliases"] == [] and listed[pbc.name]["taxonomy"] == "pbc11"


def test_a_field_that_is_not_a_smear_is_not_counted_and_says_why(running_stack: dict) -> None:
    """A blank image among real smear fields: its verdict and reason reach JSON, FHIR and
    HL7, and none of its regions is counted."""
    from fhirclient.models.diagnosticreport import DiagnosticReport
    from hl7apy.parser import parse_message

    blank = io.BytesIO()
    Image.new("RGB", (640, 480), (236, 214, 220)).save(blank, format="JPEG", quality=92)
    with lis_client(running_stack) as client:
        sid = client.post("/v1/specimens", json={"accession_number": "BM-QC-9"}).json()["id"]
        smear = [("files", ("smear.jpg", field_jpeg(4, seed=9), "image/jpeg"))]
        blank_file = [("files", ("blank.jpg", blank.getvalue(), "image/jpeg"))]
        # The smear with the pixel size its microscope gives; the blank one without.
        given = client.post(f"/v1/specimens/{sid}/images?um_per_px=0.095", files=smear)
        assert given.status_code == 201
        assert client.post(f"/v1/specimens/{sid}/images", files=blank_file).status_code == 201
        job_url = client.post(f"/v1/specimens/{sid}/analyses").headers["location"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = client.get(job_url).json()
            if job["state"] in ("succeeded", "failed"):
                break
            time.sleep(0.2)
        assert job["state"] == "succeeded", job
        body = client.get(f"/v1/specimens/{sid}/report").json()["body"]
        fhir = DiagnosticReport(
            client.get(f"/v1/specimens/{sid}/report", params={"format": "fhir"}).json()
        )
        hl7 = client.get(f"/v1/specimens/{sid}/report", params={"format": "hl7"}).text
    verdicts = sorted(f["analysable"] for f in body["fields"])
    assert verdicts == [False, True]
    flag = next(f for f in body["flags"] if f["code"] == "FIELD_NOT_ANALYSABLE")
    assert "1 of 2 fields" in flag["text"] and "no red-cell layer" in flag["text"]
    # Each field's scale: as uploaded for the smear, unknown on the blank image.
    scales = sorted((f["scale_source"], f["analysable"]) for f in body["fields"])
    assert scales == [("", False), ("upload", True)], body["fields"]
    smear_field = next(f for f in body["fields"] if f["analysable"])
    assert smear_field["um_per_px"] == pytest.approx(0.095, rel=1e-3)
    assert all(
        (f["um_per_px"] or 0) > 0 and "no_red_cell_layer" not in f["flags"]
        for f in body["fields"]
        if f["analysable"]
    )
    assert body["cells_counted"] == sum(r["count"] for r in body["differential"])
    assert "no red-cell layer" in (fhir.conclusion or "")
    order = parse_message(hl7, find_groups=True).oru_r01_patient_result.oru_r01_order_observation
    assert any("FIELD_NOT_ANALYSABLE" in n.nte_3.to_er7() for n in order.nte)


def test_reports_keep_production_while_a_two_round_campaign_serves_its_own_versions(
    running_stack: dict,
) -> None:
    """A CST+AL campaign trains, warms and classifies with its round versions while specimens
    are analysed: every report names the production version, none a campaign's."""
    ctx = running_stack
    production = ctx["model"]
    served_production(ctx, production)
    reports: list[dict] = []

    async def scenario() -> orchestrator_pb2.Campaign:
        clients = ServiceClients(ctx["peers"])
        try:
            campaign, expert = await start_campaign(
                ctx,
                clients,
                "e2e-concurrent",
                "e2e-concurrent-expert",
                seed=31,
                parameters=orchestrator_pb2.CampaignParameters(
                    initial_per_class=2,
                    validation_per_class=1,
                    test_per_class=1,
                    sample_size=30,
                    rounds=2,
                    epochs=2,
                    input_size=48,
                    cst_threshold=0.2,
                ),
            )

            def analyse_specimens() -> None:  # an LIS analysing while the campaign runs
                for n in range(3):
                    reports.append(analyse(ctx, f"BM-DURING-{n}", images=1)[0])

            analyses = asyncio.create_task(asyncio.to_thread(analyse_specimens))
            campaign = await finish_campaign(clients, campaign, expert, timeout=300)
            await analyses
            return campaign
        finally:
            await clients.close()

    campaign = asyncio.run(scenario())
    assert campaign.state == orchestrator_pb2.CAMPAIGN_STATE_COMPLETED, campaign.error
    round_versions = {r.model_version for r in campaign.rounds}
    assert len(campaign.rounds) == 2 and production not in round_versions
    assert len(reports) == 3
    assert {r["model_version"] for r in reports} == {production}
    served_production(ctx, production)

"""The differential report and its FHIR / HL7 renderings, parsed back by their libraries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fhirclient.models.diagnosticreport import DiagnosticReport
from hl7apy.parser import parse_message

from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.lis_api.formats import to_fhir, to_hl7
from marrowscope.lis_api.report import (
    DEMO_MODEL_TEXT,
    ClassifiedCell,
    Thresholds,
    build_differential,
    percentages_summing_to_100,
    record_model,
)

TAXONOMY = load_taxonomy("paper17")


def cells(
    spec: dict[str, int], probability: float = 0.95, margin: float = 0.9
) -> list[ClassifiedCell]:
    out = []
    for code, n in spec.items():
        out += [ClassifiedCell(str(uuid.uuid4()), code, probability, margin) for _ in range(n)]
    return out


def test_percentages_always_sum_to_exactly_100() -> None:
    for counts in ([1, 1, 1], [2, 3, 7, 11, 0], [499, 1], [1] * 17, [0, 5]):
        percents = percentages_summing_to_100(counts)
        assert round(sum(percents), 6) == 100.0
        for n, p in zip(counts, percents, strict=True):
            assert abs(p - 100 * n / sum(counts)) < 0.1 + 1e-9
    assert percentages_summing_to_100([0, 0]) == [0.0, 0.0]


def test_denominator_ratio_blasts_and_flags() -> None:
    classified = cells({"MB": 60, "PMC": 20, "SEG": 70, "PCEB": 50, "LY": 50, "ART": 30, "BN": 20})
    classified += [ClassifiedCell(str(uuid.uuid4()), None)]  # unreadable
    body = build_differential(classified, TAXONOMY, Thresholds())
    assert body["cells_found"] == 301
    assert body["cells_counted"] == 250  # ART, BN and the unreadable cell are not in it
    assert body["cells_unreadable"] == 1
    rows = {r["code"]: r for r in body["differential"]}
    assert "ART" not in rows and "BN" not in rows
    assert round(sum(r["percent"] for r in rows.values()), 6) == 100.0
    assert rows["MB"]["percent"] == 24.0 and body["blast_percent"] == 24.0
    assert body["myeloid_erythroid_ratio"] == round(150 / 50, 2)
    excluded = {e["code"]: e["count"] for e in body["excluded_from_differential"]}
    assert excluded == {"BN": 20, "ART": 30}
    codes = {f["code"] for f in body["flags"]}
    assert codes == {"BLASTS_HIGH", "BELOW_TARGET_COUNT"}


def test_low_confidence_minimum_count_and_corrections() -> None:
    confident = cells({"SEG": 100, "OEB": 40})
    unsure = cells({"MC": 50}, probability=0.45, margin=0.05)
    body = build_differential(confident + unsure, TAXONOMY, Thresholds())
    assert body["cells_low_confidence"] == 50
    assert {f["code"] for f in body["flags"]} == {"BELOW_MINIMUM_COUNT", "HIGH_UNCLASSIFIABLE"}
    assert body["blast_percent"] == 0.0 and "BLASTS_ELEVATED" not in str(body["flags"])
    corrected = [ClassifiedCell(c.cell_id, "MMC", c.probability, c.margin, "dr.h") for c in unsure]
    after = build_differential(confident + corrected, TAXONOMY, Thresholds(minimum_cells=100))
    assert after["cells_low_confidence"] == 0 and after["cells_corrected"] == 50
    rows = {r["code"]: r["count"] for r in after["differential"]}
    assert rows["MMC"] == 50 and rows["MC"] == 0
    assert {f["code"] for f in after["flags"]} == {"BELOW_TARGET_COUNT"}


def report(status: str) -> dict:
    body = build_differential(
        cells({"MB": 30, "SEG": 200, "PCEB": 100, "LY": 170}), TAXONOMY, Thresholds()
    )
    body.update(model_version="m-1", algorithm_versions=["stain-v3"], images_analysed=2)
    return {
        "id": str(uuid.uuid4()),
        "specimen_id": str(uuid.uuid4()),
        "accession_number": "BM-2026-0042",
        "version": 2,
        "status": status,
        "created_at": datetime.now(UTC).isoformat(),
        "body": body,
    }


def test_fhir_r4_parses_back_with_the_fhir_library() -> None:
    source = report("final")
    parsed = DiagnosticReport(to_fhir(source))  # strict: raises on any invalid element
    assert parsed.status == "final"
    assert (
        parsed.code.coding[0].system == "http://loinc.org"
        and parsed.code.coding[0].code == "47286-0"
    )
    assert parsed.identifier[0].value == "BM-2026-0042"
    observations = {o.id: o for o in parsed.contained}
    assert len(parsed.result) == len(observations) == 15 + 2  # 15 nucleated classes + 2 totals
    assert {r.reference[1:] for r in parsed.result} == set(observations)
    assert observations["me-ratio"].code.coding[0].code == "11138-5"
    assert observations["me-ratio"].valueQuantity.value == source["body"]["myeloid_erythroid_ratio"]
    assert observations["cells-counted"].valueQuantity.value == 500
    assert observations["cls-mb"].valueQuantity.value == 6.0
    assert (
        round(
            sum(o.valueQuantity.value for k, o in observations.items() if k.startswith("cls-")), 6
        )
        == 100.0
    )


def test_hl7_oru_r01_parses_back_with_one_obx_per_class_and_status() -> None:
    for status, flag in (("preliminary", "P"), ("final", "F"), ("corrected", "C")):
        message = parse_message(to_hl7(report(status)), find_groups=True)
        assert message.msh.msh_9.to_er7() == "ORU^R01^ORU_R01"
        assert message.msh.msh_12.to_er7() == "2.5.1"
        order = message.oru_r01_patient_result.oru_r01_order_observation
        assert order.obr.obr_2.to_er7() == "BM-2026-0042"
        assert order.obr.obr_25.to_er7() == flag
        obx = [g.obx for g in order.oru_r01_observation]
        assert len(obx) == 15 + 2
        assert {o.obx_11.to_er7() for o in obx} == {flag}
        by_code = {o.obx_3.to_er7().split("^")[0]: o.obx_5.to_er7() for o in obx}
        assert by_code["MB"] == "6.0" and by_code["38257-2"] == "500"


def test_cells_of_an_unknown_class_are_not_counted_and_are_flagged() -> None:
    """A model of another taxonomy must not break or bend the differential."""
    body = build_differential(
        cells({"SEG": 300, "LY": 200, "NOT-A-CLASS": 7}), TAXONOMY, Thresholds()
    )
    assert body["cells_found"] == 507 and body["cells_counted"] == 500
    assert body["cells_unreadable"] == 0
    assert "UNKNOWN_CLASSES" in {f["code"] for f in body["flags"]}
    assert round(sum(r["percent"] for r in body["differential"]), 6) == 100.0


def test_a_demo_model_report_says_not_for_clinical_use_in_every_format() -> None:
    source = report("preliminary")
    record_model(source["body"], name="paper17-demo", artifact_sha256="ab" * 32, demo=True)
    record_model(source["body"], name="paper17-demo", artifact_sha256="ab" * 32, demo=True)
    flags = [f for f in source["body"]["flags"] if f["code"] == "DEMO_MODEL"]
    assert len(flags) == 1 and DEMO_MODEL_TEXT in flags[0]["text"]  # recorded once
    assert source["body"]["model_artifact_sha256"] == "ab" * 32
    assert DEMO_MODEL_TEXT in DiagnosticReport(to_fhir(source)).conclusion
    message = parse_message(to_hl7(source), find_groups=True)
    notes = message.oru_r01_patient_result.oru_r01_order_observation.nte
    assert any(
        "DEMO_MODEL" in n.nte_3.to_er7() and DEMO_MODEL_TEXT in n.nte_3.to_er7() for n in notes
    )
    clinical = report("preliminary")
    record_model(clinical["body"], name="paper17-1", artifact_sha256="cd" * 32, demo=False)
    assert "DEMO_MODEL" not in {f["code"] for f in clinical["body"]["flags"]}
    assert DEMO_MODEL_TEXT not in to_hl7(clinical)

"""Quality control before counting: cell exclusions by the segmenter's flags, fields whose
segmentation is implausible, and how both reach the report in JSON, FHIR and HL7."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fhirclient.models.diagnosticreport import DiagnosticReport
from hl7apy.parser import parse_message

from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.lis_api.formats import to_fhir, to_hl7
from marrowscope.lis_api.qc import FIELD_NOT_ANALYSABLE, QcPolicy, judge_field
from marrowscope.lis_api.report import (
    ClassifiedCell,
    Thresholds,
    build_differential,
    record_fields,
)
from marrowscope.v1 import segmentation_pb2

TAXONOMY = load_taxonomy("paper17")
FLAG = segmentation_pb2


def segmented(
    cells: list[tuple[int, list[int]]], red_cells: int
) -> segmentation_pb2.SegmentResponse:
    return segmentation_pb2.SegmentResponse(
        red_cell_count=red_cells,
        cells=[
            segmentation_pb2.SegmentedCell(cell_id=f"c{i}", area=area, quality_flags=flags)
            for i, (area, flags) in enumerate(cells)
        ],
    )


def test_flagged_cells_are_excluded_by_policy_and_overlaps_are_kept() -> None:
    field = segmented(
        [
            (900, []),
            (900, [FLAG.QUALITY_FLAG_TOUCHES_BORDER]),
            (40_000, [FLAG.QUALITY_FLAG_TOO_LARGE]),
            (900, [FLAG.QUALITY_FLAG_OVERLAPS_CELL]),
        ],
        red_cells=120,
    )
    verdict = judge_field(field, 1000, 800, QcPolicy())
    assert verdict.analysable and not verdict.reason
    assert verdict.excluded == {"c0": "", "c1": "touches_border", "c2": "too_large", "c3": ""}
    assert verdict.cell_flags["c3"] == ["overlaps_cell"]
    lenient = judge_field(field, 1000, 800, QcPolicy(exclude_flags=()))
    assert set(lenient.excluded.values()) == {""}  # a lab's own policy


def test_a_whole_field_region_or_no_red_cells_makes_the_field_not_analysable() -> None:
    whole = judge_field(
        segmented([(1440 * 900 - 5000, [FLAG.QUALITY_FLAG_TOUCHES_BORDER])], 0),
        1440,
        900,
        QcPolicy(),
    )
    assert not whole.analysable
    assert "covers 100 % of the field" in whole.reason and "0 red cells" in whole.reason
    assert whole.excluded == {"c0": FIELD_NOT_ANALYSABLE}
    no_red = judge_field(segmented([(900, []), (950, [])], 0), 1000, 800, QcPolicy())
    assert not no_red.analysable and set(no_red.excluded.values()) == {FIELD_NOT_ANALYSABLE}
    fine = judge_field(segmented([(900, [])], 50), 1000, 800, QcPolicy())
    assert fine.analysable and fine.largest_region_share < 0.01


def test_excluded_cells_and_fields_reach_every_format() -> None:
    counted = [ClassifiedCell(str(uuid.uuid4()), "SEG", 0.95, 0.9) for _ in range(300)]
    overlapping = [
        ClassifiedCell(str(uuid.uuid4()), "LY", 0.95, 0.9, quality_flags=("overlaps_cell",))
        for _ in range(200)
    ]
    border = [ClassifiedCell(str(uuid.uuid4()), "MB", 0.99, 0.9, excluded="touches_border")]
    whole = [ClassifiedCell(str(uuid.uuid4()), "MB", 0.99, 0.9, excluded=FIELD_NOT_ANALYSABLE)]
    body = build_differential(counted + overlapping + border + whole, TAXONOMY, Thresholds())
    assert body["cells_found"] == 502 and body["cells_counted"] == 500
    assert body["blast_percent"] == 0.0  # neither excluded "blast" is counted
    assert body["excluded_by_qc"] == {FIELD_NOT_ANALYSABLE: 1, "touches_border": 1}
    codes = {f["code"]: f["text"] for f in body["flags"]}
    assert "cut by the field's border" in codes["QC_EXCLUDED"]
    assert codes["OVERLAPPING_CELLS"].startswith("200 counted cells overlap")
    reason = "one segmented region covers 100 % of the field"
    fields = [
        {"image_id": uuid.uuid4(), "analysable": True, "reason": None},
        {"image_id": uuid.uuid4(), "analysable": False, "reason": reason},
    ]
    record_fields(body, fields)
    record_fields(body, fields)  # a revision records them again, once
    not_analysable = [f for f in body["flags"] if f["code"] == "FIELD_NOT_ANALYSABLE"]
    assert len(not_analysable) == 1 and "1 of 2 fields" in not_analysable[0]["text"]
    assert reason in not_analysable[0]["text"]
    body.update(model_version="m-1", algorithm_versions=["stain-v3"], images_analysed=2)
    report = {
        "id": str(uuid.uuid4()),
        "accession_number": "BM-QC-1",
        "version": 1,
        "status": "preliminary",
        "created_at": datetime.now(UTC).isoformat(),
        "body": body,
    }
    assert reason in DiagnosticReport(to_fhir(report)).conclusion
    notes = parse_message(to_hl7(report), find_groups=True).oru_r01_patient_result
    texts = [n.nte_3.to_er7() for n in notes.oru_r01_order_observation.nte]
    assert any(t.startswith("FIELD_NOT_ANALYSABLE") and reason in t for t in texts)


def test_many_unanalysable_fields_are_summarised_by_kind_and_unsure_scales_flagged() -> None:
    """The segmenter's reasons carry per-field numbers: the report counts them by kind (so
    the FHIR conclusion and HL7 note stay short) and keeps each field's own reason; a counted
    field read at an unsure scale raises SCALE_UNCERTAIN."""
    body = build_differential(
        [ClassifiedCell(str(uuid.uuid4()), "SEG", 0.95, 0.9) for _ in range(200)],
        TAXONOMY,
        Thresholds(),
    )
    blank = [
        {
            "image_id": uuid.uuid4(),
            "analysable": False,
            "reason": f"no red-cell layer measured ({k} px)",
            "flags": ["no_red_cell_layer"],
            "um_per_px": None,
        }
        for k in range(30)
    ]
    unsure = {
        "image_id": uuid.uuid4(),
        "analysable": True,
        "reason": None,
        "flags": ["scale_uncertain"],
        "um_per_px": 0.10000000149011612,  # a real column read back
        "scale_source": "red_cells",
        "scale_confidence": 0.2,
    }
    record_fields(body, [*blank, unsure])
    codes = {f["code"]: f["text"] for f in body["flags"]}
    assert codes["FIELD_NOT_ANALYSABLE"].endswith("no red-cell layer measured (30)")
    assert len(codes["FIELD_NOT_ANALYSABLE"]) < 200
    assert codes["SCALE_UNCERTAIN"].startswith("1 of 1 counted fields")
    assert body["fields"][-1]["um_per_px"] == 0.1
    assert body["fields"][0]["reason"] == "no red-cell layer measured (0 px)"

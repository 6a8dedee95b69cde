"""The same report as FHIR R4 (fhirclient) and HL7 v2.5.1 ORU^R01 (hl7apy).

LOINC where the panel has a code (47286-0 panel, 11138-5 M:E ratio, 38257-2 cells counted);
the per-class percentages use Marrowscope's local code system (class code + name), because a
LOINC mapping per class needs a terminology review we have not done.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhirclient.models.codeableconcept import CodeableConcept
from fhirclient.models.coding import Coding
from fhirclient.models.diagnosticreport import DiagnosticReport
from fhirclient.models.fhirdatetime import FHIRDateTime
from fhirclient.models.fhirinstant import FHIRInstant
from fhirclient.models.fhirreference import FHIRReference
from fhirclient.models.identifier import Identifier
from fhirclient.models.observation import Observation
from fhirclient.models.quantity import Quantity
from hl7apy.core import Message

LOINC = "http://loinc.org"
LOCAL = "urn:marrowscope:cell-class"
UCUM = "http://unitsofmeasure.org"
ACCESSION_SYSTEM = "urn:marrowscope:lis-accession"
PANEL = ("47286-0", "Bone marrow differential panel")
ME_RATIO = ("11138-5", "Myeloid/Erythroid ratio in Bone marrow")
CELLS_COUNTED = ("38257-2", "Cells counted total [#] in Specimen")
HL7_STATUS = {"preliminary": "P", "final": "F", "corrected": "C"}


def _concept(system: str, code: str, display: str) -> CodeableConcept:
    concept = CodeableConcept()
    coding = Coding()
    coding.system, coding.code, coding.display = system, code, display
    concept.coding, concept.text = [coding], display
    return concept


def _observation(
    ident: str, status: str, code: CodeableConcept, value: float, unit: str, issued: str
) -> Observation:
    obs = Observation()
    obs.id, obs.status, obs.code = ident, status, code
    obs.category = [
        _concept(
            "http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "Laboratory"
        )
    ]
    quantity = Quantity()
    quantity.value, quantity.unit, quantity.system, quantity.code = value, unit, UCUM, unit
    obs.valueQuantity = quantity
    obs.issued = FHIRInstant(issued)
    return obs


def to_fhir(report: dict[str, Any]) -> dict[str, Any]:
    """A DiagnosticReport with its Observations contained (one self-contained resource)."""
    body, status, issued = report["body"], report["status"], report["created_at"]
    observations = []
    for row in body["differential"]:
        observations.append(
            _observation(
                f"cls-{row['code'].lower().replace('_', '-')}",
                status,
                _concept(LOCAL, row["code"], f"{row['name']} / 100 nucleated cells in bone marrow"),
                row["percent"],
                "%",
                issued,
            )
        )
    observations.append(
        _observation(
            "cells-counted",
            status,
            _concept(LOINC, *CELLS_COUNTED),
            body["cells_counted"],
            "{cells}",
            issued,
        )
    )
    if body["myeloid_erythroid_ratio"] is not None:
        observations.append(
            _observation(
                "me-ratio",
                status,
                _concept(LOINC, *ME_RATIO),
                body["myeloid_erythroid_ratio"],
                "{ratio}",
                issued,
            )
        )
    diagnostic = DiagnosticReport()
    diagnostic.id = report["id"]
    diagnostic.status = status
    diagnostic.code = _concept(LOINC, *PANEL)
    diagnostic.category = [
        _concept("http://terminology.hl7.org/CodeSystem/v2-0074", "HM", "Hematology")
    ]
    accession = Identifier()
    accession.system, accession.value = ACCESSION_SYSTEM, report["accession_number"]
    version = Identifier()
    version.system, version.value = "urn:marrowscope:report-version", str(report["version"])
    diagnostic.identifier = [accession, version]
    diagnostic.issued = FHIRInstant(issued)
    diagnostic.effectiveDateTime = FHIRDateTime(issued)
    diagnostic.contained = observations
    diagnostic.result = []
    for obs in observations:
        ref = FHIRReference()
        ref.reference = f"#{obs.id}"
        diagnostic.result.append(ref)
    flags = "; ".join(f["text"] for f in body["flags"])
    diagnostic.conclusion = (
        f"{body['cells_counted']} nucleated cells counted; blasts {body['blast_percent']} %"
        + (f"; M:E {body['myeloid_erythroid_ratio']}" if body["myeloid_erythroid_ratio"] else "")
        + (f". Flags: {flags}" if flags else "")
        + f". Model {body['model_version']}, segmentation {', '.join(body['algorithm_versions'])}."
    )
    return dict(diagnostic.as_json())


def _hl7_time(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y%m%d%H%M%S")


def to_hl7(report: dict[str, Any], sending_facility: str = "MARROWSCOPE") -> str:
    """ORU^R01 v2.5.1: OBR for the panel, one OBX per class, M:E ratio and cells counted."""
    body, result_status = report["body"], HL7_STATUS[report["status"]]
    when = _hl7_time(report["created_at"])
    message = Message("ORU_R01", version="2.5.1")
    message.msh.msh_3 = "MARROWSCOPE"
    message.msh.msh_4 = sending_facility
    message.msh.msh_7 = when
    message.msh.msh_9 = "ORU^R01^ORU_R01"
    message.msh.msh_10 = f"{report['id'][:8]}{report['version']:04d}"
    message.msh.msh_11 = "P"
    message.msh.msh_12 = "2.5.1"
    group = message.add_group("ORU_R01_PATIENT_RESULT")
    order = group.add_group("ORU_R01_ORDER_OBSERVATION")
    obr = order.add_segment("OBR")
    obr.obr_1 = "1"
    obr.obr_2 = report["accession_number"]
    obr.obr_3 = report["id"]
    obr.obr_4 = f"{PANEL[0]}^{PANEL[1]}^LN"
    obr.obr_7 = when
    obr.obr_22 = when
    obr.obr_25 = result_status
    for index, flag in enumerate(body["flags"], start=1):  # flags as notes on the order
        note = order.add_segment("NTE")
        note.nte_1 = str(index)
        note.nte_3 = f"{flag['code']}: {flag['text']}"
    rows: list[tuple[str, str, str]] = [
        (f"{r['code']}^{r['name']}^L", f"{r['percent']:.1f}", "%") for r in body["differential"]
    ]
    rows.append(
        (f"{CELLS_COUNTED[0]}^{CELLS_COUNTED[1]}^LN", str(body["cells_counted"]), "{cells}")
    )
    if body["myeloid_erythroid_ratio"] is not None:
        rows.append(
            (f"{ME_RATIO[0]}^{ME_RATIO[1]}^LN", f"{body['myeloid_erythroid_ratio']:.2f}", "{ratio}")
        )
    for index, (code, value, unit) in enumerate(rows, start=1):
        observation = order.add_group("ORU_R01_OBSERVATION")
        obx = observation.add_segment("OBX")
        obx.obx_1 = str(index)
        obx.obx_2 = "NM"
        obx.obx_3 = code
        obx.obx_5 = value
        obx.obx_6 = unit
        obx.obx_11 = result_status
        obx.obx_14 = when
    return str(message.to_er7())

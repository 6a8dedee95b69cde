"""The bone marrow differential: plain Python from classified cells to the report body.

Denominator: nucleated cells the differential counts (the taxonomy's ``nucleated`` classes).
Bare nuclei and artefacts are reported beside it, not in it. Low-confidence cells stay in
the count under their predicted class and are counted and flagged separately, because a
hematologist reviews them; an expert correction replaces the prediction in the next version.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from marrowscope.core.taxonomy import Taxonomy


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """Configurable flag thresholds (defaults: common marrow reporting practice)."""

    blast_high_pct: float = 20.0  # WHO threshold for acute leukaemia
    blast_elevated_pct: float = 10.0
    target_cells: int = 500  # ICSH: a 500-cell differential
    minimum_cells: int = 200
    low_confidence_probability: float = 0.5
    low_confidence_margin: float = 0.1
    unclassifiable_share: float = 0.2  # artefacts + low-confidence + unreadable over all cells


@dataclass(frozen=True)
class ClassifiedCell:
    cell_id: str
    class_code: str | None  # None: the cell could not be read / classified
    probability: float = 0.0
    margin: float = 0.0
    corrected_by: str = ""  # the expert whose correction set class_code
    excluded: str = ""  # why quality control left the cell out of the count ('' = counted)
    quality_flags: tuple[str, ...] = ()  # the segmenter's flags (e.g. overlaps_cell)
    ood_score: float | None = None  # distance from the model's training data


def is_low_confidence(cell: ClassifiedCell, thresholds: Thresholds) -> bool:
    if cell.corrected_by or cell.class_code is None:
        return False
    return (
        cell.probability < thresholds.low_confidence_probability
        or cell.margin < thresholds.low_confidence_margin
    )


def percentages_summing_to_100(counts: list[int], decimals: int = 1) -> list[float]:
    """Percentages rounded so that they add up to exactly 100 (largest remainder method):
    a report whose rows add up to 99.9 % makes a reader doubt every row."""
    total = sum(counts)
    if total == 0:
        return [0.0] * len(counts)
    scale = 10**decimals
    exact = [100 * scale * n / total for n in counts]
    floors = [int(e) for e in exact]
    short = 100 * scale - sum(floors)
    for i in sorted(range(len(counts)), key=lambda i: exact[i] - floors[i], reverse=True)[:short]:
        floors[i] += 1
    return [f / scale for f in floors]


def build_differential(
    cells: list[ClassifiedCell], taxonomy: Taxonomy, thresholds: Thresholds
) -> dict[str, Any]:
    """Counts, percentages, M:E ratio, blast percentage and flags."""
    by_code = {c.code: c for c in taxonomy.classes}
    qc_excluded = Counter(c.excluded for c in cells if c.excluded)
    considered = [c for c in cells if not c.excluded]
    # A class the taxonomy does not know (a model of another taxonomy) is never counted.
    counted = [c for c in considered if c.class_code is not None and c.class_code in by_code]
    unknown = sum(1 for c in considered if c.class_code is not None and c.class_code not in by_code)
    counts: Counter[str] = Counter(c.class_code for c in counted if c.class_code is not None)
    nucleated = {code for code, c in by_code.items() if c.nucleated}
    denominator = sum(n for code, n in counts.items() if code in nucleated)
    low_confidence = [c for c in counted if is_low_confidence(c, thresholds)]
    unreadable = sum(1 for c in considered if c.class_code is None)

    percents = percentages_summing_to_100(
        [counts.get(code, 0) for code in taxonomy.codes if code in nucleated]
    )
    rows = [
        {
            "code": code,
            "name": by_code[code].name,
            "lineage": by_code[code].lineage,
            "count": counts.get(code, 0),
            "percent": percent,
            "low_confidence": sum(1 for c in low_confidence if c.class_code == code),
        }
        for code, percent in zip(
            [c for c in taxonomy.codes if c in nucleated], percents, strict=True
        )
    ]
    excluded = [
        {"code": code, "name": by_code[code].name, "count": counts.get(code, 0)}
        for code in taxonomy.codes
        if code not in nucleated
    ]
    lineage_counts: Counter[str] = Counter()
    for code, n in counts.items():
        lineage_counts[by_code[code].lineage] += n
    myeloid = lineage_counts["myeloid"] + lineage_counts["blast"]
    erythroid = lineage_counts["erythroid"]
    blasts = lineage_counts["blast"]
    blast_pct = round(100.0 * blasts / denominator, 1) if denominator else 0.0
    unclassifiable = counts.get("ART", 0) + len(low_confidence) + unreadable + unknown
    total = len(considered)

    flags = []
    if denominator and blast_pct >= thresholds.blast_high_pct:
        flags.append(
            {
                "code": "BLASTS_HIGH",
                "text": f"blasts {blast_pct} % >= {thresholds.blast_high_pct:g} %",
            }
        )
    elif denominator and blast_pct >= thresholds.blast_elevated_pct:
        flags.append(
            {
                "code": "BLASTS_ELEVATED",
                "text": f"blasts {blast_pct} % >= {thresholds.blast_elevated_pct:g} %",
            }
        )
    if denominator < thresholds.minimum_cells:
        flags.append(
            {
                "code": "BELOW_MINIMUM_COUNT",
                "text": f"{denominator} cells counted, fewer than the minimum of {thresholds.minimum_cells}: not reportable as a differential",
            }
        )
    elif denominator < thresholds.target_cells:
        flags.append(
            {
                "code": "BELOW_TARGET_COUNT",
                "text": f"{denominator} cells counted, fewer than the target of {thresholds.target_cells}",
            }
        )
    cell_reasons = {r: n for r, n in qc_excluded.items() if r != "field_not_analysable"}
    if cell_reasons:
        words = {"touches_border": "cut by the field's border", "too_large": "too large"}
        parts = ", ".join(f"{n} {words.get(r, r)}" for r, n in sorted(cell_reasons.items()))
        flags.append(
            {
                "code": "QC_EXCLUDED",
                "text": f"{sum(cell_reasons.values())} cells not counted by quality control: "
                f"{parts}",
            }
        )
    overlapping = sum(1 for c in counted if "overlaps_cell" in c.quality_flags)
    if overlapping:
        flags.append(
            {
                "code": "OVERLAPPING_CELLS",
                "text": f"{overlapping} counted cells overlap another cell",
            }
        )
    if unknown:
        flags.append(
            {
                "code": "UNKNOWN_CLASSES",
                "text": f"{unknown} cells have classes outside {taxonomy.name}: not counted",
            }
        )
    if total and unclassifiable / total > thresholds.unclassifiable_share:
        flags.append(
            {
                "code": "HIGH_UNCLASSIFIABLE",
                "text": f"{unclassifiable} of {total} cells are artefacts, unreadable or low-confidence",
            }
        )

    return {
        "cells_found": len(cells),
        "cells_excluded_by_qc": sum(qc_excluded.values()),
        "excluded_by_qc": dict(sorted(qc_excluded.items())),
        "cells_counted": denominator,
        "cells_unreadable": unreadable,
        "cells_low_confidence": len(low_confidence),
        "cells_corrected": sum(1 for c in counted if c.corrected_by),
        "differential": rows,
        "excluded_from_differential": excluded,
        "myeloid_erythroid_ratio": round(myeloid / erythroid, 2) if erythroid else None,
        "myeloid_count": myeloid,
        "erythroid_count": erythroid,
        "blast_percent": blast_pct,
        "flags": flags,
        "low_confidence_cell_ids": sorted(c.cell_id for c in low_confidence),
        "thresholds": vars(thresholds),
        "definitions": {
            "denominator": "nucleated cells (bare nuclei and artefacts excluded)",
            "myeloid": "blasts + promyelocytes to segmented neutrophils, eosinophils, basophils",
            "erythroid": "proerythroblasts/basophilic to orthochromatic erythroblasts",
            "blasts": "cells classified as (myelo)blasts",
        },
    }


DEMO_MODEL_TEXT = "not for clinical use"


def set_flag(body: dict[str, Any], code: str, text: str | None) -> None:
    """The report's flag ``code`` with ``text``, or none when ``text`` is None (recording a
    flag again replaces it, so a revision never lists it twice)."""
    body["flags"] = [f for f in body["flags"] if f["code"] != code]
    if text is not None:
        body["flags"].append({"code": code, "text": text})


def record_model(body: dict[str, Any], *, name: str, artifact_sha256: str, demo: bool) -> None:
    """Tie a report body to the model version that classified its cells (name and artifact
    hash); a demo model's report carries the DEMO_MODEL flag."""
    body["model_version"] = name
    body["model_artifact_sha256"] = artifact_sha256
    body["model_demo"] = demo
    text = f"classified by the demo model {name} (trained on generated cells): {DEMO_MODEL_TEXT}"
    set_flag(body, "DEMO_MODEL", text if demo else None)


FIELD_FLAG_WORDS = {
    "region_too_large": "a region larger than any cell",
    "no_red_cell_layer": "no red-cell layer measured",
    "scale_out_of_range": "pixel size out of range",
    "nucleated_count_implausible": "more nucleated cells than fit",
}


def record_fields(body: dict[str, Any], fields: list[dict[str, Any]]) -> None:
    """The fields' QC verdicts in the report: how many were analysed, which were not
    analysable and why (a FIELD_NOT_ANALYSABLE flag, the reasons counted by kind); their
    cells are never counted. Counted fields read at an unsure scale raise SCALE_UNCERTAIN."""

    def rounded(value: Any, digits: int) -> float | None:
        return None if value is None else round(float(value), digits)

    body["fields"] = [
        {
            "image_id": str(f["image_id"]),
            "analysable": f["analysable"],
            "reason": f["reason"] or "",
            # The scale the segmenter read the field at: measured on its red cells or given.
            "um_per_px": rounded(f.get("um_per_px"), 4),
            "scale_source": f.get("scale_source") or "",
            "scale_confidence": rounded(f.get("scale_confidence"), 3),
            "flags": list(f.get("flags") or []),
        }
        for f in fields
    ]
    bad = [f for f in body["fields"] if not f["analysable"]]
    kinds: dict[str, int] = {}
    for f in bad:
        # By kind, so the text stays short with many fields; each field keeps its own reason.
        words = [FIELD_FLAG_WORDS[g] for g in f["flags"] if g in FIELD_FLAG_WORDS]
        for word in words or [f["reason"]]:
            kinds[word] = kinds.get(word, 0) + 1
    reasons = "; ".join(f"{word} ({n})" for word, n in sorted(kinds.items()))
    set_flag(
        body,
        "FIELD_NOT_ANALYSABLE",
        f"{len(bad)} of {len(fields)} fields not analysable, none of their cells counted: {reasons}"
        if bad
        else None,
    )
    counted = [f for f in body["fields"] if f["analysable"]]
    unsure = [f for f in counted if "scale_uncertain" in f["flags"]]
    set_flag(
        body,
        "SCALE_UNCERTAIN",
        f"{len(unsure)} of {len(counted)} counted fields were read at a pixel size their red "
        "cells gave unsure (dense or few red cells); an instrument profile removes the guess"
        if unsure
        else None,
    )


def record_distance(
    body: dict[str, Any],
    cells: list[ClassifiedCell],
    threshold: float | None,
    max_share_outside: float,
) -> None:
    """How far the specimen's cells lie from the model's training data; where most lie
    beyond the model's threshold, the MODEL_NOT_VALIDATED flag says the model was not made
    for these images (its classes are not to be trusted)."""
    set_flag(body, "MODEL_NOT_VALIDATED", None)
    scored = [c.ood_score for c in cells if not c.excluded and c.ood_score is not None]
    if threshold is None or not scored:
        body["ood"] = {"available": False}
        return
    outside = sum(1 for score in scored if score > threshold)
    share = outside / len(scored)
    body["ood"] = {
        "available": True,
        "threshold": round(threshold, 4),
        "cells_scored": len(scored),
        "cells_outside": outside,
        "share_outside": round(share, 4),
        "median_score": round(float(sorted(scored)[len(scored) // 2]), 4),
        "max_share_outside": max_share_outside,
    }
    if share > max_share_outside:
        set_flag(
            body,
            "MODEL_NOT_VALIDATED",
            f"model not validated for these images: {100 * share:.0f} % of the cells lie "
            "outside its training data; do not use these classes without review",
        )

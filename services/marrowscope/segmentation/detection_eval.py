"""White-cell detection scored against YOLO-format boxes (TXL-PBC): greedy one-to-one matching
at an IoU threshold, recall, precision and the mean IoU of matched boxes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

Box = tuple[float, float, float, float]  # x, y, width, height


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


DUPLICATE_IOU = 0.95


def read_yolo_boxes(label_file: Path, width: int, height: int, class_id: int = 0) -> list[Box]:
    """Boxes of ``class_id`` (TXL-PBC: 0 = WBC) in pixels, without duplicated annotations.

    A label file can list the same box several times (one TXL-PBC test field has one cell
    annotated six times); a box with IoU >= 0.95 to an earlier one is the same cell, and
    counting it again would score every detector as missing cells that are not there.
    """
    boxes: list[Box] = []
    for line in label_file.read_text().splitlines() if label_file.exists() else []:
        parts = line.split()
        if len(parts) == 5 and int(float(parts[0])) == class_id:
            cx, cy, w, h = (float(v) for v in parts[1:])
            box = ((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height)
            if all(iou(box, kept) < DUPLICATE_IOU for kept in boxes):
                boxes.append(box)
    return boxes


@dataclass
class DetectionScore:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    matched_ious: list[float] = field(default_factory=list)

    def add(self, truth: list[Box], predicted: list[Box], threshold: float = 0.5) -> None:
        """Greedy matching, best pairs first; each box matches at most once."""
        pairs = sorted(
            ((iou(t, p), i, j) for i, t in enumerate(truth) for j, p in enumerate(predicted)),
            reverse=True,
        )
        used_t: set[int] = set()
        used_p: set[int] = set()
        for value, i, j in pairs:
            if value < threshold:
                break
            if i in used_t or j in used_p:
                continue
            used_t.add(i)
            used_p.add(j)
            self.matched_ious.append(value)
        self.true_positives += len(used_t)
        self.false_negatives += len(truth) - len(used_t)
        self.false_positives += len(predicted) - len(used_p)

    @property
    def recall(self) -> float:
        return self.true_positives / max(self.true_positives + self.false_negatives, 1)

    @property
    def precision(self) -> float:
        return self.true_positives / max(self.true_positives + self.false_positives, 1)

    @property
    def mean_iou(self) -> float:
        return sum(self.matched_ious) / len(self.matched_ious) if self.matched_ious else 0.0

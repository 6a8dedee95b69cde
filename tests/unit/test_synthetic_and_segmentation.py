import numpy as np

from marrowscope.core.synthetic import make_cell, make_field, synthetic_classes
from marrowscope.segmentation.algorithm import crop_cell, mask_to_rle, rle_to_mask
from marrowscope.segmentation.stain import StainSegmenter


def test_generation_is_deterministic_by_seed() -> None:
    a, b = make_cell("SEG", 5, seed=3), make_cell("SEG", 5, seed=3)
    assert np.array_equal(a.rgb, b.rgb)
    assert not np.array_equal(a.rgb, make_cell("SEG", 5, seed=4).rgb)
    assert np.array_equal(make_field(2, seed=1).rgb, make_field(2, seed=1).rgb)


def test_cells_are_centred_on_black_282_canvas() -> None:
    for code in synthetic_classes():
        cell = make_cell(code, 0)
        assert cell.rgb.shape == (282, 282, 3)
        assert cell.rgb[:5].max() == 0 and cell.rgb[:, -5:].max() == 0
        assert cell.rgb[120:160, 120:160].max() > 0, code


def test_classes_differ_in_morphology() -> None:
    def size(code: str) -> float:
        return float(np.mean([(make_cell(code, i).rgb.max(axis=2) > 0).sum() for i in range(6)]))

    assert size("LY") < size("MB")  # lymphocytes are small, blasts large
    assert size("OEB") < size("PEB_BEB")  # erythroid maturation shrinks the cell


def test_fields_hold_cells_with_ground_truth_boxes() -> None:
    field = make_field(0, seed=0)
    assert field.rgb.shape == (704, 704, 3) and field.cells
    for cell in field.cells:
        x, y, w, h = cell.box
        assert x >= 0 and y >= 0 and x + w <= 704 and y + h <= 704 and w > 20 and h > 20


def _iou(a, b) -> float:  # type: ignore[no-untyped-def]
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_stain_segmenter_finds_most_white_cells_in_synthetic_fields() -> None:
    segmenter = StainSegmenter()
    found = total = 0
    for index in range(8):
        field = make_field(index, seed=11)
        boxes = [c.box for c in segmenter.segment(field.rgb).cells]
        total += len(field.cells)
        found += sum(any(_iou(c.box, b) >= 0.3 for b in boxes) for c in field.cells)
    assert found / total >= 0.8


def test_crop_removes_background_and_rle_round_trips() -> None:
    field = make_field(1, seed=2)
    region = StainSegmenter().segment(field.rgb).cells[0]
    crop = crop_cell(field.rgb, region)
    assert crop.shape == (282, 282, 3) and crop[0, 0].max() == 0
    assert np.array_equal(rle_to_mask(mask_to_rle(region.mask), region.mask.shape), region.mask)


def test_detection_scoring_ignores_duplicated_annotations(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from marrowscope.segmentation.detection_eval import DetectionScore, read_yolo_boxes

    labels = tmp_path / "field.txt"
    # One cell annotated three times (as in a TXL-PBC test field), a second cell, a red cell.
    labels.write_text("0 0.25 0.25 0.2 0.2\n" * 3 + "0 0.7 0.7 0.2 0.2\n1 0.5 0.5 0.1 0.1\n")
    truth = read_yolo_boxes(labels, 100, 100)
    assert truth == [(15.0, 15.0, 20.0, 20.0), (60.0, 60.0, 20.0, 20.0)]
    score = DetectionScore()
    score.add(truth, [(16.0, 15.0, 20.0, 20.0), (0.0, 80.0, 10.0, 10.0)])
    assert (score.true_positives, score.false_positives, score.false_negatives) == (1, 1, 1)


def _smear(size: int = 400) -> np.ndarray:
    """A pale, slightly bluish, noisy background to paint violet nuclei on."""
    noise = np.random.default_rng(0).normal(0, 3, (size, size, 3))
    return np.clip(np.array([222, 214, 226]) + noise, 0, 255).astype(np.uint8)


def _paint_disk(rgb: np.ndarray, cy: float, cx: float, radius: float) -> None:
    yy, xx = np.mgrid[: rgb.shape[0], : rgb.shape[1]]
    rgb[np.hypot(yy - cy, xx - cx) <= radius] = (90, 40, 140)  # violet nuclear stain


def test_lobes_of_one_nucleus_are_one_cell_at_any_magnification() -> None:
    """Two lobes 28 px apart: more than the closing bridges (2 x 10 px on a 400 px field),
    less than 0.4 x the lobes' size (sqrt of 6,360 px); stain-v2 returned two cells here."""
    rgb = _smear()
    _paint_disk(rgb, 200, 140, 45)
    _paint_disk(rgb, 200, 258, 45)
    cells = StainSegmenter().segment(rgb).cells
    assert len(cells) == 1
    x, y, w, h = cells[0].box
    assert x <= 95 and x + w >= 303  # the box spans both lobes
    # Without the joining, the same picture is two cells: the test can tell them apart.
    assert len(StainSegmenter(lobe_gap=0).segment(rgb).cells) == 2


def test_nucleus_cut_off_by_the_image_edge_is_found_whole() -> None:
    """A large nucleus in the middle and a smaller one that the bottom edge cuts off: the
    closing must not erode it at the edge, and its visible part may be under the usual floor."""
    rgb = _smear()
    _paint_disk(rgb, 150, 200, 60)  # area ~11,300 px: the floor is 0.2 x that
    _paint_disk(rgb, 410, 100, 40)  # only a 30 px high cap (area ~1,700 px) is in the image
    cells = StainSegmenter().segment(rgb).cells
    assert len(cells) == 2
    edge = max(cells, key=lambda c: c.box[1])
    x, y, w, h = edge.box
    assert y + h == 400 and y <= 372 and "touches_border" in edge.flags

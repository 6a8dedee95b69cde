"""Image folders: taxonomy inference, mapping files and the seeded per-class split."""

import json
from pathlib import Path

import pytest

from marrowscope.core.datasets import scan_image_folder, split_per_class
from marrowscope.core.errors import InvalidArgument


def _folder(root: Path, counts: dict[str, int]) -> Path:
    for label, n in counts.items():
        (root / label).mkdir(parents=True)
        for i in range(n):
            (root / label / f"{i}.jpg").write_bytes(b"x")
    return root


def test_folder_labels_pick_the_smallest_covering_taxonomy(tmp_path: Path) -> None:
    folder = scan_image_folder(_folder(tmp_path / "d", {"BNE": 3, "LY": 2}))
    assert folder.taxonomy == "pbc11"
    assert folder.counts() == {"BNE": 3, "LY": 2}
    subset = scan_image_folder(_folder(tmp_path / "e", {"LY": 1, "EO": 1}))
    assert subset.taxonomy == "pbc11"  # in pbc11 and paper17: the smaller one wins


def test_unknown_labels_ask_for_a_mapping_and_bad_mappings_are_refused(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"lymph": 2, "junk": 1})
    with pytest.raises(InvalidArgument, match="--mapping"):
        scan_image_folder(root)
    good = tmp_path / "m.json"
    good.write_text(
        json.dumps({"source": "lab", "target": "paper17", "map": {"lymph": "LY", "junk": None}})
    )
    folder = scan_image_folder(root, good)
    assert folder.taxonomy == "paper17" and folder.counts() == {"LY": 2}
    assert folder.dropped == {"junk": 1}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"source": "lab", "target": "paper17", "map": {"lymph": "LYMPH"}}))
    with pytest.raises(InvalidArgument, match="unknown paper17 class LYMPH"):
        scan_image_folder(root, bad)
    missing = tmp_path / "d2"
    _folder(missing, {"lymph": 1, "other": 1})
    with pytest.raises(InvalidArgument, match="not in the lab mapping"):
        scan_image_folder(missing, good)
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(InvalidArgument, match="not a mapping file"):
        scan_image_folder(root, tmp_path / "garbage.json")


def test_split_is_per_class_seeded_and_disjoint(tmp_path: Path) -> None:
    images = scan_image_folder(_folder(tmp_path / "d", {"LY": 40, "EO": 20})).images
    a = split_per_class(images, 0.2, 0.25, seed=3)
    b = split_per_class(images, 0.2, 0.25, seed=3)
    c = split_per_class(images, 0.2, 0.25, seed=4)
    assert a == b and a != c
    parts = [set(map(str, (i.path for i in part))) for part in (a.train, a.validation, a.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sum(i.class_code == "LY" for i in a.test) == 10
    assert sum(i.class_code == "EO" for i in a.validation) == 4
    capped = split_per_class(images, 0.2, 0.25, seed=3, limit_per_class=5)
    assert sum(i.class_code == "LY" for i in capped.train) == 5
    with pytest.raises(InvalidArgument):
        split_per_class(images, 0.6, 0.5, seed=0)

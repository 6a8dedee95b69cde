"""Labelled single-cell image folders (``DIR/<label>/*.jpg``, ImageFolder style).

Labels are mapped onto a taxonomy: by a mapping file, or directly when every folder name is a
class code of a known taxonomy. The split into train / validation / test is seeded and made per
class, so the same folder and seed always give the same sets.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidArgument
from .taxonomy import LabelMapping, available_taxonomies, load_mapping_file, load_taxonomy

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    source_label: str
    class_code: str


@dataclass(frozen=True)
class ImageFolder:
    root: Path
    taxonomy: str
    images: list[LabelledImage]
    dropped: dict[str, int]  # source label -> images the mapping leaves out

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(i.class_code for i in self.images).items()))


def _infer_taxonomy(labels: set[str]) -> str:
    """The smallest known taxonomy whose class codes include every folder label."""
    covering = [n for n in available_taxonomies() if labels <= set(load_taxonomy(n).codes)]
    if covering:
        return min(covering, key=lambda n: len(load_taxonomy(n).codes))
    raise InvalidArgument(
        f"folder labels {sorted(labels)} are not the class codes of any taxonomy "
        f"({', '.join(available_taxonomies())}); pass --mapping FILE to map them"
    )


def scan_image_folder(root: Path, mapping_file: Path | None = None) -> ImageFolder:
    """Every image under ``root/<label>/``, mapped to a taxonomy's class codes."""
    if not root.is_dir():
        raise InvalidArgument(f"{root} is not a directory (expected DIR/<label>/*.jpg)")
    by_label = {
        d.name: sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }
    by_label = {k: v for k, v in by_label.items() if v}
    if not by_label:
        raise InvalidArgument(f"no images found under {root}/<label>/ (jpg, png, tif, bmp)")
    mapping: LabelMapping | None = load_mapping_file(mapping_file) if mapping_file else None
    taxonomy = mapping.target if mapping else _infer_taxonomy(set(by_label))
    images: list[LabelledImage] = []
    dropped: dict[str, int] = {}
    for label, paths in by_label.items():
        code = mapping.map(label) if mapping else label
        if code is None:
            dropped[label] = len(paths)
            continue
        images.extend(LabelledImage(p, label, code) for p in paths)
    return ImageFolder(root, taxonomy, images, dropped)


@dataclass(frozen=True)
class Split:
    train: list[LabelledImage]
    validation: list[LabelledImage]
    test: list[LabelledImage]


def split_per_class(
    images: list[LabelledImage],
    validation: float,
    test: float,
    seed: int,
    limit_per_class: int = 0,
) -> Split:
    """Seeded per-class split; ``limit_per_class`` caps the training part (0 = no cap)."""
    if not 0 <= validation < 1 or not 0 <= test < 1 or validation + test >= 1:
        raise InvalidArgument("validation and test fractions must be in [0, 1) and sum below 1")
    groups: dict[str, list[LabelledImage]] = defaultdict(list)
    for image in images:
        groups[image.class_code].append(image)
    rng = random.Random(seed)
    train, val, tst = [], [], []
    for code in sorted(groups):
        members = sorted(groups[code], key=lambda i: str(i.path))
        rng.shuffle(members)
        n_test = round(len(members) * test)
        n_val = round(len(members) * validation)
        tst += members[:n_test]
        val += members[n_test : n_test + n_val]
        rest = members[n_test + n_val :]
        train += rest[:limit_per_class] if limit_per_class else rest
    return Split(train, val, tst)

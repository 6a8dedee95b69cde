"""Class taxonomies as data (``taxonomies/*.json``) and mappings between them.

A taxonomy lists class codes in a fixed order (the order of a model's probability vector) and
may merge classes for evaluation (the paper trains on 17 and evaluates on 16: BN -> ART).
A mapping file maps a dataset's labels onto a taxonomy; ``null`` means "no single target"
(those images need an expert's label).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from .errors import InvalidArgument, NotFound

DEFAULT_TAXONOMY = "paper17"


@dataclass(frozen=True)
class CellClass:
    code: str
    name: str
    lineage: str
    nucleated: bool


@dataclass(frozen=True)
class Taxonomy:
    name: str
    classes: tuple[CellClass, ...]
    evaluation_merge: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def codes(self) -> list[str]:
        return [c.code for c in self.classes]

    @property
    def evaluation_codes(self) -> list[str]:
        return [c for c in self.codes if c not in self.evaluation_merge]

    def index(self, code: str) -> int:
        try:
            return self.codes.index(code)
        except ValueError:
            raise InvalidArgument(
                f"class {code!r} is not in taxonomy {self.name} ({', '.join(self.codes)})"
            ) from None

    def check(self, code: str) -> str:
        self.index(code)
        return code

    def for_evaluation(self, code: str) -> str:
        return self.evaluation_merge.get(code, code)

    @classmethod
    def from_dict(cls, data: dict) -> Taxonomy:
        classes = tuple(CellClass(**c) for c in data["classes"])
        codes = [c.code for c in classes]
        if len(set(codes)) != len(codes):
            raise InvalidArgument(f"taxonomy {data['name']} repeats a class code")
        merge = dict(data.get("evaluation_merge", {}))
        for src, dst in merge.items():
            if src not in codes or dst not in codes:
                raise InvalidArgument(f"evaluation merge {src}->{dst} names unknown classes")
        return cls(data["name"], classes, merge, data.get("description", ""))


@dataclass(frozen=True)
class LabelMapping:
    source: str
    target: str
    mapping: dict[str, str | None]

    def map(self, label: str) -> str | None:
        if label not in self.mapping:
            raise InvalidArgument(f"label {label!r} is not in the {self.source} mapping")
        return self.mapping[label]


def _data_dir() -> Path:
    return Path(str(resources.files("marrowscope.core").joinpath("taxonomies")))


def available_taxonomies() -> list[str]:
    return sorted(p.stem for p in _data_dir().glob("*.json") if "_to_" not in p.stem)


@cache
def load_taxonomy(name: str = DEFAULT_TAXONOMY) -> Taxonomy:
    path = _data_dir() / f"{name}.json"
    if "_to_" in name or not path.is_file():
        raise NotFound(f"unknown taxonomy {name!r}; known: {', '.join(available_taxonomies())}")
    return Taxonomy.from_dict(json.loads(path.read_text()))


@cache
def load_mapping(source: str, target: str) -> LabelMapping:
    path = _data_dir() / f"{source}_to_{target}.json"
    if not path.is_file():
        raise NotFound(f"no label mapping from {source} to {target}")
    return load_mapping_file(path)


def load_mapping_file(path: Path) -> LabelMapping:
    """A mapping file: ``{"source": ..., "target": TAXONOMY, "map": {label: code or null}}``.

    ``source`` may name a taxonomy (then the map must cover it exactly) or be free text for a
    dataset's own labels; ``null`` drops a label (e.g. a class the target cannot represent).
    """
    try:
        data = json.loads(path.read_text())
        source, target, raw = str(data["source"]), str(data["target"]), dict(data["map"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidArgument(
            f"{path}: not a mapping file ({error}); expected "
            '{"source": ..., "target": TAXONOMY, "map": {"label": "CODE" or null}}'
        ) from None
    mapping = LabelMapping(source, target, raw)
    target_codes = load_taxonomy(target).codes
    if source in available_taxonomies() and sorted(raw) != sorted(load_taxonomy(source).codes):
        raise InvalidArgument(f"mapping {path.name} does not cover exactly the {source} classes")
    for dst in mapping.mapping.values():
        if dst is not None and dst not in target_codes:
            raise InvalidArgument(f"mapping {path.name} names unknown {target} class {dst}")
    return mapping

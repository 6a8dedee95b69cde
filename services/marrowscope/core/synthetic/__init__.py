"""Synthetic bone marrow cells and smear fields (see generator.py)."""

from .generator import (
    FieldCell,
    SyntheticCell,
    SyntheticField,
    iter_cells,
    make_cell,
    make_field,
    synthetic_classes,
)

__all__ = [
    "FieldCell",
    "SyntheticCell",
    "SyntheticField",
    "iter_cells",
    "make_cell",
    "make_field",
    "synthetic_classes",
]

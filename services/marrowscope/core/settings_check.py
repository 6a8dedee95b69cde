"""Misspelt settings stop a service at start, instead of being silently ignored.

pydantic-settings reads the variables it knows and ignores the rest, so
``MARROWSCOPE_INFERENCE_PREFER_CUDE=false`` would leave CUDA on without a word. Each service
checks, at start, every ``MARROWSCOPE_*`` variable against the settings classes it reads: a
variable under one of their prefixes must name a field, and a variable under no known prefix
at all is a typo of one. Variables under another service's prefix are left to that service
(the local stack and the chart give every service the same environment); ``marrowscope up``
checks them all before it starts anything.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from pydantic_settings import BaseSettings

from .errors import InvalidArgument

# Every settings prefix of the package, whichever service owns it.
KNOWN_PREFIXES = (
    "MARROWSCOPE_DB_",
    "MARROWSCOPE_STORE_",
    "MARROWSCOPE_SEGMENTATION_",
    "MARROWSCOPE_INFERENCE_",
    "MARROWSCOPE_TRAINING_",
    "MARROWSCOPE_TRAINING_KUBE_",
    "MARROWSCOPE_CURATION_",
    "MARROWSCOPE_ORCHESTRATOR_",
    "MARROWSCOPE_LIS_",
    "MARROWSCOPE_LOG_",
)
# MARROWSCOPE_* variables that are not settings of a service.
NOT_SETTINGS = frozenset(
    {
        "MARROWSCOPE_HOME",  # the local stack's folder (marrowscope up)
        "MARROWSCOPE_DATA_DIR",  # tests and benchmarks
        "MARROWSCOPE_TEST_PG_ADMIN_DSN",
        "MARROWSCOPE_BENCH_PG_ADMIN_DSN",
    }
)


def setting_names(classes: Iterable[type[BaseSettings]]) -> dict[str, str]:
    """Each class's variable names, mapped to the prefix they are read under."""
    names: dict[str, str] = {}
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, field in cls.model_fields.items():
            variable = field.alias if field.alias else prefix + name
            names[variable.upper()] = prefix
    return names


def _owner(variable: str) -> str:
    """The longest known prefix of ``variable`` ('' when none)."""
    return max((p for p in KNOWN_PREFIXES if variable.startswith(p)), key=len, default="")


def unknown_settings(
    environ: Mapping[str, str],
    classes: Iterable[type[BaseSettings]],
    extra_names: Iterable[str] = (),
) -> list[str]:
    """One line per ``MARROWSCOPE_*`` variable none of ``classes`` reads although it should:
    under one of their prefixes but no field's name, or under no known prefix at all."""
    classes = list(classes)
    known = setting_names(classes) | {n: _owner(n) for n in extra_names}
    checked = {str(c.model_config.get("env_prefix", "")) for c in classes}
    problems = []
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith("MARROWSCOPE_") or upper in known or upper in NOT_SETTINGS:
            continue
        owner = _owner(upper)
        if owner and owner not in checked:
            continue  # another service's setting: that service checks it
        near = difflib.get_close_matches(upper, [*known, *NOT_SETTINGS], n=1, cutoff=0.75)
        hint = f"; did you mean {near[0]}?" if near else ""
        problems.append(f"{variable} is not a Marrowscope setting{hint}")
    return problems


def refuse_unknown_settings(
    environ: Mapping[str, str],
    classes: Iterable[type[BaseSettings]],
    extra_names: Iterable[str] = (),
) -> None:
    """Raise InvalidArgument naming every misspelt setting (see :func:`unknown_settings`)."""
    problems = unknown_settings(environ, classes, extra_names)
    if problems:
        raise InvalidArgument("unknown settings (fix or remove them): " + "; ".join(problems))

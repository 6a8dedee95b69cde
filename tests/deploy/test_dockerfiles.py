"""The Dockerfiles, checked without a Docker engine: parsed instruction by instruction."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "deploy").glob("Dockerfile*"))
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "git", "curl", "wget")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """(ARG defaults before the first FROM, stages) with line continuations joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif op == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], ""), parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else ""
            stages.append(Stage(base, name))
        else:
            stages[-1].instructions.append((op, rest))
    return args, stages


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multi_stage_pinned_non_root_and_healthy(path: Path) -> None:
    _, stages = parse(path)
    assert len(stages) >= 2, "multi-stage: build tools stay in the build stage"
    names = {s.name for s in stages}
    for stage in stages:
        if stage.base in names:
            continue
        image, _, tag = stage.base.rpartition(":")
        assert image and tag and tag != "latest", f"base image not pinned by tag: {stage.base}"
    final = stages[-1]
    users = [rest for op, rest in final.instructions if op == "USER"]
    assert users, "the final stage sets USER"
    assert users[-1].split(":")[0] not in ("root", "0"), "the final stage runs as non-root"
    assert any(op == "HEALTHCHECK" for op, _ in final.instructions), "HEALTHCHECK documented"
    assert any(op == "CMD" for op, _ in final.instructions)
    final_runs = " ".join(rest for op, rest in final.instructions if op == "RUN")
    for tool in BUILD_TOOLS:
        assert not re.search(rf"install[^&]*\b{re.escape(tool)}\b", final_runs), f"{tool} in final"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_copy_source_exists_and_is_not_ignored(path: Path) -> None:
    _, stages = parse(path)
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = 0
    for stage in stages:
        for op, rest in stage.instructions:
            if op not in ("COPY", "ADD"):
                continue
            parts = shlex.split(rest)
            if any(p.startswith("--from=") for p in parts):
                continue
            sources = [p for p in parts if not p.startswith("--")][:-1]
            for source in sources:
                copies += 1
                assert (ROOT / source).exists(), f"COPY source missing: {source}"
                assert source.rstrip("/") not in ignored, (
                    f"COPY source is in .dockerignore: {source}"
                )
    assert copies >= 3


def test_every_module_the_chart_and_images_start_exists() -> None:
    sources = [
        *DOCKERFILES,
        *(ROOT / "helm" / "marrowscope" / "templates").iterdir(),
        ROOT / "services" / "marrowscope" / "training" / "kube.py",
    ]
    modules = set()
    for source in sources:
        text = source.read_text()
        modules |= set(re.findall(r'"-m",\s*"marrowscope\.([\w.]+)"', text))
        modules |= set(re.findall(r"python -m marrowscope\.([\w.]+)", text))
    assert {"lis_api", "inference", "core.healthcheck", "core.migrate", "training.job"} <= modules
    for module in modules:
        path = ROOT / "services" / "marrowscope" / Path(*module.split("."))
        assert (path / "__main__.py").exists() or path.with_suffix(".py").exists(), module

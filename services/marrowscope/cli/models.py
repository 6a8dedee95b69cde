"""`marrowscope models ...`: the registered versions and what the LIS classifies with.

models list [--json]                 versions, newest first, with the aliases naming them
models show VERSION                  one version: taxonomy, classes, metrics, artifact
models promote VERSION --reason T    make VERSION production (or --alias candidate)
models rollback --reason T           production back to the version before its last change
models export VERSION --out F.onnx   the version's ONNX artifact, checked against its hash
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from marrowscope.core.clients import ServiceClients
from marrowscope.core.errors import IntegrityError
from marrowscope.core.objectstore import ObjectStore
from marrowscope.v1 import common_pb2, training_pb2

# The gate classifies the locked evaluation set with two versions: minutes on a big set.
GATE_DEADLINE_S = 900


def add_parser(sub: Any, func: Callable[[argparse.Namespace], int]) -> None:
    models = sub.add_parser("models", help="model versions, the production alias, promotion")
    actions = models.add_subparsers(dest="models_action", required=True)
    ls = actions.add_parser("list", help="registered versions, newest first, with their aliases")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--limit", type=int, default=50)
    show = actions.add_parser("show", help="one version in full")
    show.add_argument("version", help="a version's name or id, or an alias")
    for name, text in (
        ("promote", "point an alias (default production: what the LIS uses) at a version"),
        ("rollback", "point an alias back at the version it named before its last change"),
    ):
        action = actions.add_parser(name, help=text)
        if name == "promote":
            action.add_argument("version", help="a version's name or id")
            action.add_argument(
                "--force",
                action="store_true",
                help="promote although the gate refuses (recorded as forced, with the reason)",
            )
        action.add_argument("--alias", default="production", choices=("production", "candidate"))
        action.add_argument("--reason", required=True, help="why (kept in the audit trail)")
        action.add_argument("--actor", default=getpass.getuser(), help="who (default: you)")
    locked = actions.add_parser(
        "evaluation-set", help="lock an imported dataset for evaluation only (the gate uses it)"
    )
    locked.add_argument("dataset")
    locked.add_argument("--taxonomy", default="", help="default: the clinical taxonomy")
    locked.add_argument("--reason", required=True)
    locked.add_argument("--actor", default=getpass.getuser())
    export = actions.add_parser("export", help="write a version's ONNX artifact to a file")
    export.add_argument("version", help="a version's name or id, or an alias")
    export.add_argument("--out", type=Path, required=True)
    for parser in (models, ls, show, export, *actions.choices.values()):
        parser.set_defaults(func=func)


def _aliases_by_version(aliases: training_pb2.ListModelAliasesResponse) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for change in aliases.current:
        out.setdefault(change.model.id, []).append(change.alias)
    return out


def _version_json(model: common_pb2.ModelVersion, aliases: list[str]) -> dict[str, Any]:
    return {
        "id": model.id,
        "name": model.name,
        "taxonomy": model.taxonomy,
        "classes": list(model.class_codes),
        "aliases": aliases,
        "demo": model.demo,
        "created_at": model.created_at.ToDatetime().isoformat() + "Z",
        "artifact_sha256": model.artifact.sha256,
        "metrics": dict(model.metrics),
    }


async def _resolve(clients: ServiceClients, version: str) -> common_pb2.ModelVersion:
    """A version by name, id or alias ('production', 'candidate')."""
    return await clients.training.GetModelVersion(training_pb2.GetModelVersionRequest(id=version))


def _change_line(change: training_pb2.AliasChange) -> str:
    before = f" (was {change.previous_version})" if change.previous_version else ""
    demo = " [demo model: not for clinical use]" if change.model.demo else ""
    return f"{change.alias} -> {change.model.name}{before}{demo}: {change.action} by {change.actor}"


async def run(clients: ServiceClients, store: ObjectStore, args: argparse.Namespace) -> int:
    """One `models` action against the running stack; the exit status."""
    action = args.models_action
    if action == "list":
        versions = await clients.training.ListModelVersions(
            training_pb2.ListModelVersionsRequest(limit=args.limit)
        )
        aliases = _aliases_by_version(
            await clients.training.ListModelAliases(training_pb2.ListModelAliasesRequest())
        )
        rows = [_version_json(m, aliases.get(m.id, [])) for m in versions.model_versions]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for row in rows:
            tags = ", ".join(row["aliases"]) + (" demo" if row["demo"] else "")
            accuracy = row["metrics"].get("validation_accuracy")
            shown = f"{accuracy:.3f}" if accuracy is not None else "  -  "
            print(
                f"{row['name']:<22} {row['taxonomy']:<8} val acc {shown}  {row['created_at']}  {tags}"
            )
        if not any(r["aliases"] for r in rows):
            print("no version is production: `marrowscope models promote VERSION --reason TEXT`")
        return 0
    if action == "show":
        model = await _resolve(clients, args.version)
        aliases = _aliases_by_version(
            await clients.training.ListModelAliases(training_pb2.ListModelAliasesRequest())
        )
        print(json.dumps(_version_json(model, aliases.get(model.id, [])), indent=2))
        return 0
    if action == "promote":
        change = await clients.training.PromoteModel(
            training_pb2.PromoteModelRequest(
                model_version=args.version,
                alias=args.alias,
                actor=args.actor,
                reason=args.reason,
                force=args.force,
            ),
            timeout=GATE_DEADLINE_S,
        )
        print(_change_line(change) + (" [forced]" if change.forced else ""))
        if change.comparison:
            print(change.comparison)
        return 0
    if action == "evaluation-set":
        locked = await clients.training.LockEvaluationSet(
            training_pb2.LockEvaluationSetRequest(
                dataset=args.dataset, taxonomy=args.taxonomy, actor=args.actor, reason=args.reason
            )
        )
        state = "locked" if locked.newly_locked else "was locked already"
        print(f"{locked.dataset} ({locked.taxonomy}, {locked.cells} cells): {state}")
        return 0
    if action == "rollback":
        change = await clients.training.RollbackModel(
            training_pb2.RollbackModelRequest(
                alias=args.alias, actor=args.actor, reason=args.reason
            )
        )
        print(_change_line(change))
        return 0
    model = await _resolve(clients, args.version)  # export
    data = store.get(model.artifact.key)
    if hashlib.sha256(data).hexdigest() != model.artifact.sha256:
        raise IntegrityError(f"artifact of {model.name} does not match its registered sha256")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes, sha256 {model.artifact.sha256[:12]}...)")
    return 0

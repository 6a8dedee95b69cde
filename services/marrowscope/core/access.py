"""Who may call which gRPC method: the allow-list every server enforces.

Identities are the common names of the mutual-TLS client certificates (``core.pki``). A method
not listed here is refused to everyone (default deny). ``tests/unit/test_access_policy.py``
checks that every method of every proto is listed, and that a service is granted exactly the
calls its code makes (the operator, ``admin``, may call every method). Health checks are open to any caller that
completes the TLS handshake, so probes need no special identity.

User-level rules (an expert's own tasks, admin-only user creation) are checked on top of this
by the curation service with the user's token.
"""

from __future__ import annotations

from collections.abc import Mapping

ADMIN = "admin"  # the operator's command line: marrowscope CLI, bootstrap, experiments
LIS = "lis-api"

HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICES = (
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)

_SEG = "marrowscope.v1.SegmentationService"
_INF = "marrowscope.v1.InferenceService"
_TRA = "marrowscope.v1.TrainingService"
_CUR = "marrowscope.v1.CurationService"
_ORC = "marrowscope.v1.OrchestratorService"

_ALLOWED: dict[str, tuple[str, ...]] = {
    # Patient fields come from the LIS; the operator's tools segment datasets.
    f"{_SEG}/Segment": (LIS, ADMIN),
    f"{_SEG}/SegmentStream": (ADMIN,),
    # Centre-cell crops for single-cell datasets (ImportCells, `train --center-crop`).
    f"{_SEG}/CropCenterCell": ("orchestrator", ADMIN),
    f"{_INF}/Classify": (LIS, ADMIN),
    f"{_INF}/ClassifyStream": ("orchestrator", ADMIN),
    f"{_INF}/GetServingModel": (ADMIN,),
    # Switching the served model: the SSL rounds and the operator only.
    f"{_INF}/LoadModel": ("orchestrator", ADMIN),
    f"{_TRA}/StartTraining": ("orchestrator", ADMIN),
    f"{_TRA}/GetTrainingJob": (ADMIN,),
    f"{_TRA}/WatchTrainingJob": ("orchestrator", ADMIN),
    f"{_TRA}/CancelTraining": (ADMIN,),
    f"{_TRA}/ListModelVersions": (LIS, ADMIN),
    f"{_TRA}/GetModelVersion": (ADMIN,),
    f"{_TRA}/ListModelAliases": (LIS, ADMIN),
    # Promotion decides what patient reports use: the operator, or an admin-scoped LIS
    # client through the LIS API (which checks that scope and records the principal).
    f"{_TRA}/PromoteModel": (LIS, ADMIN),
    f"{_TRA}/RollbackModel": (LIS, ADMIN),
    f"{_TRA}/LockEvaluationSet": (ADMIN,),
    f"{_CUR}/CreateReviewTasks": ("orchestrator", LIS),
    # Expert actions carry the expert's own token as well (checked by curation). The web
    # workbench calls them in-process; over gRPC only the operator's tools (the simulated
    # expert of experiments) may.
    f"{_CUR}/ClaimTasks": (ADMIN,),
    f"{_CUR}/ReleaseTasks": (ADMIN,),
    f"{_CUR}/SubmitDecisions": (ADMIN,),
    f"{_CUR}/UndoDecision": (ADMIN,),
    f"{_CUR}/ListDecisions": ("orchestrator", LIS, ADMIN),
    f"{_CUR}/GetProgress": ("orchestrator", LIS, ADMIN),
    f"{_CUR}/CreateUser": (ADMIN,),
    f"{_CUR}/WhoAmI": (ADMIN,),
    # Campaigns: the operator; the workbench's admin pages list, start and pause them.
    f"{_ORC}/CreateCampaign": (ADMIN,),
    f"{_ORC}/StartCampaign": ("curation", ADMIN),
    f"{_ORC}/PauseCampaign": ("curation", ADMIN),
    f"{_ORC}/GetCampaign": ("curation", ADMIN),
    f"{_ORC}/ListCampaigns": ("curation", ADMIN),
    f"{_ORC}/WatchCampaign": (ADMIN,),
    f"{_ORC}/ImportCells": (ADMIN,),
}

ACCESS_POLICY: Mapping[str, frozenset[str]] = {
    f"/{method}": frozenset(identities) for method, identities in _ALLOWED.items()
}


def is_open(method: str) -> bool:
    """Methods any TLS peer may call: health (probes), reflection (when a server enables it)."""
    service = method.lstrip("/").split("/", 1)[0]
    return service == HEALTH_SERVICE or service in REFLECTION_SERVICES


def allowed(method: str, identity: str | None) -> bool:
    """May ``identity`` call ``method`` (``/package.Service/Method``)?"""
    if is_open(method):
        return True
    return identity is not None and identity in ACCESS_POLICY.get(method, frozenset())

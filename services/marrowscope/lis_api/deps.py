"""What the LIS API's route modules share: the stores, settings and the scope dependencies."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from marrowscope.core.clients import ServiceClients
from marrowscope.core.images import ImageLimits
from marrowscope.core.objectstore import ObjectStore
from marrowscope.core.taxonomy import Taxonomy

from .auth import Client
from .report import Thresholds
from .settings import LisApiSettings
from .store import LisStore


@dataclass(frozen=True)
class LisContext:
    settings: LisApiSettings
    lis: LisStore
    store: ObjectStore
    clients: ServiceClients
    limits: ImageLimits
    thresholds: Thresholds
    taxonomy: Taxonomy
    # FastAPI dependencies: the authenticated client, if it has the scope (401 / 403 else).
    submit: Callable[..., Awaitable[Client]]
    read: Callable[..., Awaitable[Client]]
    review: Callable[..., Awaitable[Client]]
    admin: Callable[..., Awaitable[Client]]
    run: Callable[..., Awaitable[Any]]

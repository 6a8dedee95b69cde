"""Run the curation service: ``python -m marrowscope.curation``."""

from marrowscope.core.logs import configure_logging
from marrowscope.core.runtime import open_resources, serve
from marrowscope.v1 import curation_pb2_grpc

from .service import CurationService
from .servicer import SERVICE_NAME, CurationServicer
from .settings import CurationSettings


def main() -> None:
    configure_logging("curation")
    settings = CurationSettings()
    resources = open_resources()
    service = CurationService(resources.pool, settings.default_lease_seconds, settings.max_claim)
    if settings.admin_token.get_secret_value():
        service.ensure_user("admin", "admin", settings.admin_token.get_secret_value())
    if settings.service_token.get_secret_value():
        service.ensure_user(
            "marrowscope-services", "service", settings.service_token.get_secret_value()
        )
    servicer = CurationServicer(service)

    serve(
        settings,
        [SERVICE_NAME],
        lambda server: curation_pb2_grpc.add_CurationServiceServicer_to_server(servicer, server),
        resources=resources,
    )


if __name__ == "__main__":
    main()

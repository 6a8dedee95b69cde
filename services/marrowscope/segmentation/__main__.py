"""Run the segmentation service: ``python -m marrowscope.segmentation``."""

from marrowscope.core.images import ImageLimits
from marrowscope.core.runtime import (
    open_resources,
    prepare_process,
    serve,
)
from marrowscope.v1 import segmentation_pb2_grpc

from .catalogue import algorithms_from_settings
from .service import SegmentationService
from .servicer import SERVICE_NAME, SegmentationServicer
from .settings import SegmentationSettings


def main() -> None:
    prepare_process("segmentation", SegmentationSettings)
    settings = SegmentationSettings()
    resources = open_resources()
    service = SegmentationService(
        resources.pool,
        resources.store,
        algorithms=algorithms_from_settings(settings, resources.store),
        limits=ImageLimits(max_pixels=settings.max_field_pixels),
    )
    servicer = SegmentationServicer(service)

    serve(
        settings,
        [SERVICE_NAME],
        lambda server: segmentation_pb2_grpc.add_SegmentationServiceServicer_to_server(
            servicer, server
        ),
        resources=resources,
    )


if __name__ == "__main__":
    main()

"""Run the segmentation service: ``python -m marrowscope.segmentation``."""

from marrowscope.core.images import ImageLimits
from marrowscope.core.logs import configure_logging
from marrowscope.core.runtime import open_resources, serve
from marrowscope.v1 import segmentation_pb2_grpc

from .service import SegmentationService
from .servicer import SERVICE_NAME, SegmentationServicer
from .settings import SegmentationSettings
from .stain import StainSegmenter


def main() -> None:
    configure_logging("segmentation")
    settings = SegmentationSettings()
    resources = open_resources()
    algorithm = StainSegmenter(min_nucleus_area=settings.min_nucleus_area)
    service = SegmentationService(
        resources.pool,
        resources.store,
        algorithms={algorithm.version: algorithm},
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

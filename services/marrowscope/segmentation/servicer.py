"""gRPC transport for the segmentation service: protobuf <-> domain, nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from marrowscope.core.errors import InvalidArgument
from marrowscope.core.objectstore import StoredObject
from marrowscope.v1 import common_pb2, segmentation_pb2, segmentation_pb2_grpc

from . import field_qc
from .algorithm import FieldReport
from .service import FieldResult, SegmentationService

SERVICE_NAME = segmentation_pb2.DESCRIPTOR.services_by_name["SegmentationService"].full_name
_FLAGS = {
    "touches_border": segmentation_pb2.QUALITY_FLAG_TOUCHES_BORDER,
    "overlaps_cell": segmentation_pb2.QUALITY_FLAG_OVERLAPS_CELL,
    "too_small": segmentation_pb2.QUALITY_FLAG_TOO_SMALL,
    "too_large": segmentation_pb2.QUALITY_FLAG_TOO_LARGE,
    "low_contrast": segmentation_pb2.QUALITY_FLAG_LOW_CONTRAST,
}

# Each field-QC flag is the proto enum value of the same name (FIELD_FLAG_<NAME>).
FIELD_FLAGS = {
    name: segmentation_pb2.FieldFlag.Value(f"FIELD_FLAG_{name.upper()}")
    for name in field_qc.FIELD_FLAGS
}


def _field_quality(report: FieldReport | None) -> segmentation_pb2.FieldQuality:
    if report is None:
        return segmentation_pb2.FieldQuality(assessed=False, analysable=True)
    return segmentation_pb2.FieldQuality(
        assessed=True,
        analysable=report.analysable,
        flags=[FIELD_FLAGS[f] for f in report.flags],
        reason="; ".join(report.reasons),
        um_per_px=report.um_per_px,
        red_cell_diameter_px=report.red_cell_diameter_px,
        scale_source=report.scale_source,
        scale_confidence=report.scale_confidence,
        vignetting=report.vignetting,
    )


def _object_ref(stored: StoredObject) -> common_pb2.ObjectRef:
    return common_pb2.ObjectRef(
        key=stored.key,
        sha256=stored.sha256,
        size_bytes=stored.size_bytes,
        content_type=stored.content_type,
    )


def _box(box: tuple[int, int, int, int]) -> common_pb2.Box:
    return common_pb2.Box(x=box[0], y=box[1], width=box[2], height=box[3])


def _response(result: FieldResult) -> segmentation_pb2.SegmentResponse:
    return segmentation_pb2.SegmentResponse(
        field_image_id=result.field_image_id,
        field_image_key=result.field_image_key,
        algorithm_version=result.algorithm_version,
        red_cell_count=result.red_cell_count,
        platelet_count=result.platelet_count,
        field_quality=_field_quality(result.report),
        cells=[
            segmentation_pb2.SegmentedCell(
                cell_id=c.cell_id,
                index=c.index,
                crop=_object_ref(c.crop),
                box=_box(c.box),
                mask_rle=c.mask_rle,
                area=c.area,
                quality_flags=[_FLAGS[f] for f in c.flags],
            )
            for c in result.cells
        ],
    )


class SegmentationServicer(segmentation_pb2_grpc.SegmentationServiceServicer):
    def __init__(self, service: SegmentationService) -> None:
        self.service = service

    async def Segment(
        self, request: segmentation_pb2.SegmentRequest, context: grpc.aio.ServicerContext
    ) -> segmentation_pb2.SegmentResponse:
        if not request.field_image_key:
            raise InvalidArgument("field_image_key is required")
        result = await asyncio.to_thread(
            self.service.segment,
            request.field_image_key,
            request.algorithm,
            request.um_per_px,
            request.um_per_px_source,
        )
        return _response(result)

    async def SegmentStream(
        self,
        request_iterator: AsyncIterator[segmentation_pb2.SegmentRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[segmentation_pb2.SegmentResponse]:
        async for request in request_iterator:
            yield await self.Segment(request, context)

    async def CropCenterCell(
        self, request: segmentation_pb2.CropCenterCellRequest, context: grpc.aio.ServicerContext
    ) -> segmentation_pb2.CropCenterCellResponse:
        if not request.image_key:
            raise InvalidArgument("image_key is required")
        crop, box = await asyncio.to_thread(self.service.crop_center_cell, request.image_key)
        return segmentation_pb2.CropCenterCellResponse(crop=_object_ref(crop), box=_box(box))

from marrowscope.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QualityFlag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUALITY_FLAG_UNSPECIFIED: _ClassVar[QualityFlag]
    QUALITY_FLAG_TOUCHES_BORDER: _ClassVar[QualityFlag]
    QUALITY_FLAG_OVERLAPS_CELL: _ClassVar[QualityFlag]
    QUALITY_FLAG_TOO_SMALL: _ClassVar[QualityFlag]
    QUALITY_FLAG_TOO_LARGE: _ClassVar[QualityFlag]
    QUALITY_FLAG_LOW_CONTRAST: _ClassVar[QualityFlag]

class FieldFlag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIELD_FLAG_UNSPECIFIED: _ClassVar[FieldFlag]
    FIELD_FLAG_REGION_TOO_LARGE: _ClassVar[FieldFlag]
    FIELD_FLAG_NO_RED_CELL_LAYER: _ClassVar[FieldFlag]
    FIELD_FLAG_SCALE_OUT_OF_RANGE: _ClassVar[FieldFlag]
    FIELD_FLAG_NUCLEATED_COUNT_IMPLAUSIBLE: _ClassVar[FieldFlag]
    FIELD_FLAG_SCALE_UNCERTAIN: _ClassVar[FieldFlag]
QUALITY_FLAG_UNSPECIFIED: QualityFlag
QUALITY_FLAG_TOUCHES_BORDER: QualityFlag
QUALITY_FLAG_OVERLAPS_CELL: QualityFlag
QUALITY_FLAG_TOO_SMALL: QualityFlag
QUALITY_FLAG_TOO_LARGE: QualityFlag
QUALITY_FLAG_LOW_CONTRAST: QualityFlag
FIELD_FLAG_UNSPECIFIED: FieldFlag
FIELD_FLAG_REGION_TOO_LARGE: FieldFlag
FIELD_FLAG_NO_RED_CELL_LAYER: FieldFlag
FIELD_FLAG_SCALE_OUT_OF_RANGE: FieldFlag
FIELD_FLAG_NUCLEATED_COUNT_IMPLAUSIBLE: FieldFlag
FIELD_FLAG_SCALE_UNCERTAIN: FieldFlag

class SegmentRequest(_message.Message):
    __slots__ = ("field_image_key", "algorithm", "um_per_px", "um_per_px_source")
    FIELD_IMAGE_KEY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    UM_PER_PX_FIELD_NUMBER: _ClassVar[int]
    UM_PER_PX_SOURCE_FIELD_NUMBER: _ClassVar[int]
    field_image_key: str
    algorithm: str
    um_per_px: float
    um_per_px_source: str
    def __init__(self, field_image_key: _Optional[str] = ..., algorithm: _Optional[str] = ..., um_per_px: _Optional[float] = ..., um_per_px_source: _Optional[str] = ...) -> None: ...

class SegmentedCell(_message.Message):
    __slots__ = ("cell_id", "crop", "box", "mask_rle", "area", "quality_flags", "index")
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    MASK_RLE_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FLAGS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    crop: _common_pb2.ObjectRef
    box: _common_pb2.Box
    mask_rle: str
    area: int
    quality_flags: _containers.RepeatedScalarFieldContainer[QualityFlag]
    index: int
    def __init__(self, cell_id: _Optional[str] = ..., crop: _Optional[_Union[_common_pb2.ObjectRef, _Mapping]] = ..., box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., mask_rle: _Optional[str] = ..., area: _Optional[int] = ..., quality_flags: _Optional[_Iterable[_Union[QualityFlag, str]]] = ..., index: _Optional[int] = ...) -> None: ...

class FieldQuality(_message.Message):
    __slots__ = ("assessed", "analysable", "flags", "reason", "um_per_px", "red_cell_diameter_px", "scale_source", "scale_confidence", "vignetting")
    ASSESSED_FIELD_NUMBER: _ClassVar[int]
    ANALYSABLE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    UM_PER_PX_FIELD_NUMBER: _ClassVar[int]
    RED_CELL_DIAMETER_PX_FIELD_NUMBER: _ClassVar[int]
    SCALE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    SCALE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    VIGNETTING_FIELD_NUMBER: _ClassVar[int]
    assessed: bool
    analysable: bool
    flags: _containers.RepeatedScalarFieldContainer[FieldFlag]
    reason: str
    um_per_px: float
    red_cell_diameter_px: float
    scale_source: str
    scale_confidence: float
    vignetting: float
    def __init__(self, assessed: _Optional[bool] = ..., analysable: _Optional[bool] = ..., flags: _Optional[_Iterable[_Union[FieldFlag, str]]] = ..., reason: _Optional[str] = ..., um_per_px: _Optional[float] = ..., red_cell_diameter_px: _Optional[float] = ..., scale_source: _Optional[str] = ..., scale_confidence: _Optional[float] = ..., vignetting: _Optional[float] = ...) -> None: ...

class SegmentResponse(_message.Message):
    __slots__ = ("field_image_id", "field_image_key", "algorithm_version", "cells", "red_cell_count", "platelet_count", "field_quality")
    FIELD_IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_IMAGE_KEY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_VERSION_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    RED_CELL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PLATELET_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIELD_QUALITY_FIELD_NUMBER: _ClassVar[int]
    field_image_id: str
    field_image_key: str
    algorithm_version: str
    cells: _containers.RepeatedCompositeFieldContainer[SegmentedCell]
    red_cell_count: int
    platelet_count: int
    field_quality: FieldQuality
    def __init__(self, field_image_id: _Optional[str] = ..., field_image_key: _Optional[str] = ..., algorithm_version: _Optional[str] = ..., cells: _Optional[_Iterable[_Union[SegmentedCell, _Mapping]]] = ..., red_cell_count: _Optional[int] = ..., platelet_count: _Optional[int] = ..., field_quality: _Optional[_Union[FieldQuality, _Mapping]] = ...) -> None: ...

class CropCenterCellRequest(_message.Message):
    __slots__ = ("image_key",)
    IMAGE_KEY_FIELD_NUMBER: _ClassVar[int]
    image_key: str
    def __init__(self, image_key: _Optional[str] = ...) -> None: ...

class CropCenterCellResponse(_message.Message):
    __slots__ = ("crop", "box")
    CROP_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    crop: _common_pb2.ObjectRef
    box: _common_pb2.Box
    def __init__(self, crop: _Optional[_Union[_common_pb2.ObjectRef, _Mapping]] = ..., box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ...) -> None: ...

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
QUALITY_FLAG_UNSPECIFIED: QualityFlag
QUALITY_FLAG_TOUCHES_BORDER: QualityFlag
QUALITY_FLAG_OVERLAPS_CELL: QualityFlag
QUALITY_FLAG_TOO_SMALL: QualityFlag
QUALITY_FLAG_TOO_LARGE: QualityFlag
QUALITY_FLAG_LOW_CONTRAST: QualityFlag

class SegmentRequest(_message.Message):
    __slots__ = ("field_image_key", "algorithm")
    FIELD_IMAGE_KEY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    field_image_key: str
    algorithm: str
    def __init__(self, field_image_key: _Optional[str] = ..., algorithm: _Optional[str] = ...) -> None: ...

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

class SegmentResponse(_message.Message):
    __slots__ = ("field_image_id", "field_image_key", "algorithm_version", "cells", "red_cell_count", "platelet_count")
    FIELD_IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_IMAGE_KEY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_VERSION_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    RED_CELL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PLATELET_COUNT_FIELD_NUMBER: _ClassVar[int]
    field_image_id: str
    field_image_key: str
    algorithm_version: str
    cells: _containers.RepeatedCompositeFieldContainer[SegmentedCell]
    red_cell_count: int
    platelet_count: int
    def __init__(self, field_image_id: _Optional[str] = ..., field_image_key: _Optional[str] = ..., algorithm_version: _Optional[str] = ..., cells: _Optional[_Iterable[_Union[SegmentedCell, _Mapping]]] = ..., red_cell_count: _Optional[int] = ..., platelet_count: _Optional[int] = ...) -> None: ...

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

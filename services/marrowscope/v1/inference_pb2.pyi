from marrowscope.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClassifyRequest(_message.Message):
    __slots__ = ("cells", "model_version")
    CELLS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    cells: _containers.RepeatedCompositeFieldContainer[_common_pb2.CellRef]
    model_version: str
    def __init__(self, cells: _Optional[_Iterable[_Union[_common_pb2.CellRef, _Mapping]]] = ..., model_version: _Optional[str] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("predictions", "model_version")
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Prediction]
    model_version: str
    def __init__(self, predictions: _Optional[_Iterable[_Union[_common_pb2.Prediction, _Mapping]]] = ..., model_version: _Optional[str] = ...) -> None: ...

class GetServingModelRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServingModel(_message.Message):
    __slots__ = ("model", "execution_provider")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelVersion
    execution_provider: str
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelVersion, _Mapping]] = ..., execution_provider: _Optional[str] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("model_version",)
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    def __init__(self, model_version: _Optional[str] = ...) -> None: ...

import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ObjectRef(_message.Message):
    __slots__ = ("key", "sha256", "size_bytes", "content_type")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    key: str
    sha256: str
    size_bytes: int
    content_type: str
    def __init__(self, key: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., content_type: _Optional[str] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class CellRef(_message.Message):
    __slots__ = ("cell_id", "object_key")
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    object_key: str
    def __init__(self, cell_id: _Optional[str] = ..., object_key: _Optional[str] = ...) -> None: ...

class LabeledCell(_message.Message):
    __slots__ = ("cell_id", "object_key", "class_code")
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    CLASS_CODE_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    object_key: str
    class_code: str
    def __init__(self, cell_id: _Optional[str] = ..., object_key: _Optional[str] = ..., class_code: _Optional[str] = ...) -> None: ...

class InputSpec(_message.Message):
    __slots__ = ("size", "mean", "std", "layout", "dtype")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    size: int
    mean: _containers.RepeatedScalarFieldContainer[float]
    std: _containers.RepeatedScalarFieldContainer[float]
    layout: str
    dtype: str
    def __init__(self, size: _Optional[int] = ..., mean: _Optional[_Iterable[float]] = ..., std: _Optional[_Iterable[float]] = ..., layout: _Optional[str] = ..., dtype: _Optional[str] = ...) -> None: ...

class EpochMetrics(_message.Message):
    __slots__ = ("epoch", "train_loss", "train_accuracy", "validation_loss", "validation_accuracy", "seconds")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    train_loss: float
    train_accuracy: float
    validation_loss: float
    validation_accuracy: float
    seconds: float
    def __init__(self, epoch: _Optional[int] = ..., train_loss: _Optional[float] = ..., train_accuracy: _Optional[float] = ..., validation_loss: _Optional[float] = ..., validation_accuracy: _Optional[float] = ..., seconds: _Optional[float] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("id", "name", "parent_id", "taxonomy", "class_codes", "input", "artifact", "training_set_hash", "metrics", "learning_curve", "created_at", "architecture", "demo")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    TAXONOMY_FIELD_NUMBER: _ClassVar[int]
    CLASS_CODES_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    TRAINING_SET_HASH_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_CURVE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    DEMO_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    parent_id: str
    taxonomy: str
    class_codes: _containers.RepeatedScalarFieldContainer[str]
    input: InputSpec
    artifact: ObjectRef
    training_set_hash: str
    metrics: _containers.ScalarMap[str, float]
    learning_curve: _containers.RepeatedCompositeFieldContainer[EpochMetrics]
    created_at: _timestamp_pb2.Timestamp
    architecture: str
    demo: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., parent_id: _Optional[str] = ..., taxonomy: _Optional[str] = ..., class_codes: _Optional[_Iterable[str]] = ..., input: _Optional[_Union[InputSpec, _Mapping]] = ..., artifact: _Optional[_Union[ObjectRef, _Mapping]] = ..., training_set_hash: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., learning_curve: _Optional[_Iterable[_Union[EpochMetrics, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., architecture: _Optional[str] = ..., demo: _Optional[bool] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("cell_id", "object_key", "probabilities", "top1_class", "top1_probability", "top2_class", "top2_probability", "margin", "entropy", "model_version", "error", "ood_score")
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    TOP1_CLASS_FIELD_NUMBER: _ClassVar[int]
    TOP1_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    TOP2_CLASS_FIELD_NUMBER: _ClassVar[int]
    TOP2_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    ENTROPY_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OOD_SCORE_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    object_key: str
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    top1_class: str
    top1_probability: float
    top2_class: str
    top2_probability: float
    margin: float
    entropy: float
    model_version: str
    error: str
    ood_score: float
    def __init__(self, cell_id: _Optional[str] = ..., object_key: _Optional[str] = ..., probabilities: _Optional[_Iterable[float]] = ..., top1_class: _Optional[str] = ..., top1_probability: _Optional[float] = ..., top2_class: _Optional[str] = ..., top2_probability: _Optional[float] = ..., margin: _Optional[float] = ..., entropy: _Optional[float] = ..., model_version: _Optional[str] = ..., error: _Optional[str] = ..., ood_score: _Optional[float] = ...) -> None: ...

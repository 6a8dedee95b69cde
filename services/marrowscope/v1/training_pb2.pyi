import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from marrowscope.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainingJobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_JOB_STATE_UNSPECIFIED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_QUEUED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_RUNNING: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_SUCCEEDED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_FAILED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_CANCELLED: _ClassVar[TrainingJobState]
TRAINING_JOB_STATE_UNSPECIFIED: TrainingJobState
TRAINING_JOB_STATE_QUEUED: TrainingJobState
TRAINING_JOB_STATE_RUNNING: TrainingJobState
TRAINING_JOB_STATE_SUCCEEDED: TrainingJobState
TRAINING_JOB_STATE_FAILED: TrainingJobState
TRAINING_JOB_STATE_CANCELLED: TrainingJobState

class LockEvaluationSetRequest(_message.Message):
    __slots__ = ("dataset", "taxonomy", "actor", "reason")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TAXONOMY_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    taxonomy: str
    actor: str
    reason: str
    def __init__(self, dataset: _Optional[str] = ..., taxonomy: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class EvaluationSet(_message.Message):
    __slots__ = ("dataset", "taxonomy", "cells", "newly_locked")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TAXONOMY_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    NEWLY_LOCKED_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    taxonomy: str
    cells: int
    newly_locked: bool
    def __init__(self, dataset: _Optional[str] = ..., taxonomy: _Optional[str] = ..., cells: _Optional[int] = ..., newly_locked: _Optional[bool] = ...) -> None: ...

class HyperParameters(_message.Message):
    __slots__ = ("epochs", "batch_size", "learning_rate", "momentum", "input_size", "seed", "early_stopping_patience", "augment", "architecture", "width", "lr_schedule", "precise_bn_images")
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPING_PATIENCE_FIELD_NUMBER: _ClassVar[int]
    AUGMENT_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    LR_SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    PRECISE_BN_IMAGES_FIELD_NUMBER: _ClassVar[int]
    epochs: int
    batch_size: int
    learning_rate: float
    momentum: float
    input_size: int
    seed: int
    early_stopping_patience: int
    augment: bool
    architecture: str
    width: int
    lr_schedule: str
    precise_bn_images: int
    def __init__(self, epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., momentum: _Optional[float] = ..., input_size: _Optional[int] = ..., seed: _Optional[int] = ..., early_stopping_patience: _Optional[int] = ..., augment: _Optional[bool] = ..., architecture: _Optional[str] = ..., width: _Optional[int] = ..., lr_schedule: _Optional[str] = ..., precise_bn_images: _Optional[int] = ...) -> None: ...

class StartTrainingRequest(_message.Message):
    __slots__ = ("request_id", "taxonomy", "teacher", "validation", "parent_model_version", "hyper_parameters", "labels", "demo")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TAXONOMY_FIELD_NUMBER: _ClassVar[int]
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    PARENT_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    HYPER_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DEMO_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    taxonomy: str
    teacher: _containers.RepeatedCompositeFieldContainer[_common_pb2.LabeledCell]
    validation: _containers.RepeatedCompositeFieldContainer[_common_pb2.LabeledCell]
    parent_model_version: str
    hyper_parameters: HyperParameters
    labels: _containers.ScalarMap[str, str]
    demo: bool
    def __init__(self, request_id: _Optional[str] = ..., taxonomy: _Optional[str] = ..., teacher: _Optional[_Iterable[_Union[_common_pb2.LabeledCell, _Mapping]]] = ..., validation: _Optional[_Iterable[_Union[_common_pb2.LabeledCell, _Mapping]]] = ..., parent_model_version: _Optional[str] = ..., hyper_parameters: _Optional[_Union[HyperParameters, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., demo: _Optional[bool] = ...) -> None: ...

class PromoteModelRequest(_message.Message):
    __slots__ = ("model_version", "alias", "actor", "reason", "force")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    alias: str
    actor: str
    reason: str
    force: bool
    def __init__(self, model_version: _Optional[str] = ..., alias: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class RollbackModelRequest(_message.Message):
    __slots__ = ("alias", "actor", "reason")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    alias: str
    actor: str
    reason: str
    def __init__(self, alias: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AliasChange(_message.Message):
    __slots__ = ("alias", "model", "previous_version", "action", "actor", "reason", "at", "forced", "comparison")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    FORCED_FIELD_NUMBER: _ClassVar[int]
    COMPARISON_FIELD_NUMBER: _ClassVar[int]
    alias: str
    model: _common_pb2.ModelVersion
    previous_version: str
    action: str
    actor: str
    reason: str
    at: _timestamp_pb2.Timestamp
    forced: bool
    comparison: str
    def __init__(self, alias: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelVersion, _Mapping]] = ..., previous_version: _Optional[str] = ..., action: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., forced: _Optional[bool] = ..., comparison: _Optional[str] = ...) -> None: ...

class ListModelAliasesRequest(_message.Message):
    __slots__ = ("alias", "history")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    alias: str
    history: int
    def __init__(self, alias: _Optional[str] = ..., history: _Optional[int] = ...) -> None: ...

class ListModelAliasesResponse(_message.Message):
    __slots__ = ("current", "history")
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    current: _containers.RepeatedCompositeFieldContainer[AliasChange]
    history: _containers.RepeatedCompositeFieldContainer[AliasChange]
    def __init__(self, current: _Optional[_Iterable[_Union[AliasChange, _Mapping]]] = ..., history: _Optional[_Iterable[_Union[AliasChange, _Mapping]]] = ...) -> None: ...

class TrainingJob(_message.Message):
    __slots__ = ("id", "state", "epoch", "total_epochs", "learning_curve", "model_version", "error", "created_at", "updated_at", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_CURVE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: TrainingJobState
    epoch: int
    total_epochs: int
    learning_curve: _containers.RepeatedCompositeFieldContainer[_common_pb2.EpochMetrics]
    model_version: str
    error: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    labels: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[TrainingJobState, str]] = ..., epoch: _Optional[int] = ..., total_epochs: _Optional[int] = ..., learning_curve: _Optional[_Iterable[_Union[_common_pb2.EpochMetrics, _Mapping]]] = ..., model_version: _Optional[str] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetTrainingJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelTrainingRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListModelVersionsRequest(_message.Message):
    __slots__ = ("taxonomy", "limit")
    TAXONOMY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    taxonomy: str
    limit: int
    def __init__(self, taxonomy: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListModelVersionsResponse(_message.Message):
    __slots__ = ("model_versions",)
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    model_versions: _containers.RepeatedCompositeFieldContainer[_common_pb2.ModelVersion]
    def __init__(self, model_versions: _Optional[_Iterable[_Union[_common_pb2.ModelVersion, _Mapping]]] = ...) -> None: ...

class GetModelVersionRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

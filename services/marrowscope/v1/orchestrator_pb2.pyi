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

class CampaignMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_METHOD_UNSPECIFIED: _ClassVar[CampaignMethod]
    CAMPAIGN_METHOD_ST: _ClassVar[CampaignMethod]
    CAMPAIGN_METHOD_CST: _ClassVar[CampaignMethod]
    CAMPAIGN_METHOD_AL: _ClassVar[CampaignMethod]
    CAMPAIGN_METHOD_CST_AL: _ClassVar[CampaignMethod]
    CAMPAIGN_METHOD_RANDOM: _ClassVar[CampaignMethod]

class CampaignState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_STATE_UNSPECIFIED: _ClassVar[CampaignState]
    CAMPAIGN_STATE_CREATED: _ClassVar[CampaignState]
    CAMPAIGN_STATE_RUNNING: _ClassVar[CampaignState]
    CAMPAIGN_STATE_PAUSED: _ClassVar[CampaignState]
    CAMPAIGN_STATE_COMPLETED: _ClassVar[CampaignState]
    CAMPAIGN_STATE_FAILED: _ClassVar[CampaignState]

class RoundState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUND_STATE_UNSPECIFIED: _ClassVar[RoundState]
    ROUND_STATE_TRAINING: _ClassVar[RoundState]
    ROUND_STATE_PREDICTING: _ClassVar[RoundState]
    ROUND_STATE_REVIEWING: _ClassVar[RoundState]
    ROUND_STATE_ABSORBING: _ClassVar[RoundState]
    ROUND_STATE_EVALUATING: _ClassVar[RoundState]
    ROUND_STATE_DONE: _ClassVar[RoundState]
    ROUND_STATE_FAILED: _ClassVar[RoundState]
CAMPAIGN_METHOD_UNSPECIFIED: CampaignMethod
CAMPAIGN_METHOD_ST: CampaignMethod
CAMPAIGN_METHOD_CST: CampaignMethod
CAMPAIGN_METHOD_AL: CampaignMethod
CAMPAIGN_METHOD_CST_AL: CampaignMethod
CAMPAIGN_METHOD_RANDOM: CampaignMethod
CAMPAIGN_STATE_UNSPECIFIED: CampaignState
CAMPAIGN_STATE_CREATED: CampaignState
CAMPAIGN_STATE_RUNNING: CampaignState
CAMPAIGN_STATE_PAUSED: CampaignState
CAMPAIGN_STATE_COMPLETED: CampaignState
CAMPAIGN_STATE_FAILED: CampaignState
ROUND_STATE_UNSPECIFIED: RoundState
ROUND_STATE_TRAINING: RoundState
ROUND_STATE_PREDICTING: RoundState
ROUND_STATE_REVIEWING: RoundState
ROUND_STATE_ABSORBING: RoundState
ROUND_STATE_EVALUATING: RoundState
ROUND_STATE_DONE: RoundState
ROUND_STATE_FAILED: RoundState

class CampaignParameters(_message.Message):
    __slots__ = ("cst_threshold", "al_margin", "sample_size", "class_cap", "initial_per_class", "validation_per_class", "test_per_class", "rounds", "epochs", "input_size", "seed", "batch_size", "width")
    CST_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    AL_MARGIN_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CLASS_CAP_FIELD_NUMBER: _ClassVar[int]
    INITIAL_PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    TEST_PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    cst_threshold: float
    al_margin: float
    sample_size: int
    class_cap: int
    initial_per_class: int
    validation_per_class: int
    test_per_class: int
    rounds: int
    epochs: int
    input_size: int
    seed: int
    batch_size: int
    width: int
    def __init__(self, cst_threshold: _Optional[float] = ..., al_margin: _Optional[float] = ..., sample_size: _Optional[int] = ..., class_cap: _Optional[int] = ..., initial_per_class: _Optional[int] = ..., validation_per_class: _Optional[int] = ..., test_per_class: _Optional[int] = ..., rounds: _Optional[int] = ..., epochs: _Optional[int] = ..., input_size: _Optional[int] = ..., seed: _Optional[int] = ..., batch_size: _Optional[int] = ..., width: _Optional[int] = ...) -> None: ...

class CreateCampaignRequest(_message.Message):
    __slots__ = ("request_id", "name", "method", "dataset", "taxonomy", "parameters")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TAXONOMY_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    name: str
    method: CampaignMethod
    dataset: str
    taxonomy: str
    parameters: CampaignParameters
    def __init__(self, request_id: _Optional[str] = ..., name: _Optional[str] = ..., method: _Optional[_Union[CampaignMethod, str]] = ..., dataset: _Optional[str] = ..., taxonomy: _Optional[str] = ..., parameters: _Optional[_Union[CampaignParameters, _Mapping]] = ...) -> None: ...

class CampaignIdRequest(_message.Message):
    __slots__ = ("campaign_id",)
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    def __init__(self, campaign_id: _Optional[str] = ...) -> None: ...

class ListCampaignsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCampaignsResponse(_message.Message):
    __slots__ = ("campaigns",)
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedCompositeFieldContainer[Campaign]
    def __init__(self, campaigns: _Optional[_Iterable[_Union[Campaign, _Mapping]]] = ...) -> None: ...

class Round(_message.Message):
    __slots__ = ("id", "number", "state", "model_version", "teacher_count", "sampled", "cst_candidates", "al_candidates", "decided", "added", "test_accuracy", "test_mean_recall", "training_job_id", "started_at", "finished_at", "error", "metrics_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TEACHER_COUNT_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_FIELD_NUMBER: _ClassVar[int]
    CST_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    AL_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    DECIDED_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    TEST_MEAN_RECALL_FIELD_NUMBER: _ClassVar[int]
    TRAINING_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    METRICS_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    number: int
    state: RoundState
    model_version: str
    teacher_count: int
    sampled: int
    cst_candidates: int
    al_candidates: int
    decided: int
    added: int
    test_accuracy: float
    test_mean_recall: float
    training_job_id: str
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    error: str
    metrics_json: str
    def __init__(self, id: _Optional[str] = ..., number: _Optional[int] = ..., state: _Optional[_Union[RoundState, str]] = ..., model_version: _Optional[str] = ..., teacher_count: _Optional[int] = ..., sampled: _Optional[int] = ..., cst_candidates: _Optional[int] = ..., al_candidates: _Optional[int] = ..., decided: _Optional[int] = ..., added: _Optional[int] = ..., test_accuracy: _Optional[float] = ..., test_mean_recall: _Optional[float] = ..., training_job_id: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ..., metrics_json: _Optional[str] = ...) -> None: ...

class Campaign(_message.Message):
    __slots__ = ("id", "name", "method", "dataset", "taxonomy", "parameters", "state", "rounds", "pool_size", "labelled_count", "error", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TAXONOMY_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    POOL_SIZE_FIELD_NUMBER: _ClassVar[int]
    LABELLED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    method: CampaignMethod
    dataset: str
    taxonomy: str
    parameters: CampaignParameters
    state: CampaignState
    rounds: _containers.RepeatedCompositeFieldContainer[Round]
    pool_size: int
    labelled_count: int
    error: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., method: _Optional[_Union[CampaignMethod, str]] = ..., dataset: _Optional[str] = ..., taxonomy: _Optional[str] = ..., parameters: _Optional[_Union[CampaignParameters, _Mapping]] = ..., state: _Optional[_Union[CampaignState, str]] = ..., rounds: _Optional[_Iterable[_Union[Round, _Mapping]]] = ..., pool_size: _Optional[int] = ..., labelled_count: _Optional[int] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ImportCell(_message.Message):
    __slots__ = ("object_key", "reference_label")
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_LABEL_FIELD_NUMBER: _ClassVar[int]
    object_key: str
    reference_label: str
    def __init__(self, object_key: _Optional[str] = ..., reference_label: _Optional[str] = ...) -> None: ...

class ImportCellsRequest(_message.Message):
    __slots__ = ("dataset", "taxonomy", "cells", "crop_center_cell")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TAXONOMY_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    CROP_CENTER_CELL_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    taxonomy: str
    cells: _containers.RepeatedCompositeFieldContainer[ImportCell]
    crop_center_cell: bool
    def __init__(self, dataset: _Optional[str] = ..., taxonomy: _Optional[str] = ..., cells: _Optional[_Iterable[_Union[ImportCell, _Mapping]]] = ..., crop_center_cell: _Optional[bool] = ...) -> None: ...

class ImportCellsResponse(_message.Message):
    __slots__ = ("cells", "created")
    CELLS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    cells: _containers.RepeatedCompositeFieldContainer[_common_pb2.CellRef]
    created: int
    def __init__(self, cells: _Optional[_Iterable[_Union[_common_pb2.CellRef, _Mapping]]] = ..., created: _Optional[int] = ...) -> None: ...

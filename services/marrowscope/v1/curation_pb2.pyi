import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_KIND_UNSPECIFIED: _ClassVar[TaskKind]
    TASK_KIND_CST: _ClassVar[TaskKind]
    TASK_KIND_AL: _ClassVar[TaskKind]

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_OPEN: _ClassVar[TaskState]
    TASK_STATE_CLAIMED: _ClassVar[TaskState]
    TASK_STATE_DECIDED: _ClassVar[TaskState]

class DecisionAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_ACTION_UNSPECIFIED: _ClassVar[DecisionAction]
    DECISION_ACTION_CONFIRM: _ClassVar[DecisionAction]
    DECISION_ACTION_CORRECT: _ClassVar[DecisionAction]
    DECISION_ACTION_LABEL: _ClassVar[DecisionAction]
    DECISION_ACTION_TOO_DIFFICULT: _ClassVar[DecisionAction]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_EXPERT: _ClassVar[Role]
    ROLE_ADMIN: _ClassVar[Role]
    ROLE_SERVICE: _ClassVar[Role]

class BatchRequester(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_REQUESTER_UNSPECIFIED: _ClassVar[BatchRequester]
    BATCH_REQUESTER_CAMPAIGN_ROUND: _ClassVar[BatchRequester]
    BATCH_REQUESTER_ANALYSIS_JOB: _ClassVar[BatchRequester]
TASK_KIND_UNSPECIFIED: TaskKind
TASK_KIND_CST: TaskKind
TASK_KIND_AL: TaskKind
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_OPEN: TaskState
TASK_STATE_CLAIMED: TaskState
TASK_STATE_DECIDED: TaskState
DECISION_ACTION_UNSPECIFIED: DecisionAction
DECISION_ACTION_CONFIRM: DecisionAction
DECISION_ACTION_CORRECT: DecisionAction
DECISION_ACTION_LABEL: DecisionAction
DECISION_ACTION_TOO_DIFFICULT: DecisionAction
ROLE_UNSPECIFIED: Role
ROLE_EXPERT: Role
ROLE_ADMIN: Role
ROLE_SERVICE: Role
BATCH_REQUESTER_UNSPECIFIED: BatchRequester
BATCH_REQUESTER_CAMPAIGN_ROUND: BatchRequester
BATCH_REQUESTER_ANALYSIS_JOB: BatchRequester

class ClassScore(_message.Message):
    __slots__ = ("class_code", "probability")
    CLASS_CODE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    class_code: str
    probability: float
    def __init__(self, class_code: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class NewReviewTask(_message.Message):
    __slots__ = ("cell_id", "object_key", "kind", "proposed_class", "top_classes")
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_CLASS_FIELD_NUMBER: _ClassVar[int]
    TOP_CLASSES_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    object_key: str
    kind: TaskKind
    proposed_class: str
    top_classes: _containers.RepeatedCompositeFieldContainer[ClassScore]
    def __init__(self, cell_id: _Optional[str] = ..., object_key: _Optional[str] = ..., kind: _Optional[_Union[TaskKind, str]] = ..., proposed_class: _Optional[str] = ..., top_classes: _Optional[_Iterable[_Union[ClassScore, _Mapping]]] = ...) -> None: ...

class ReviewTask(_message.Message):
    __slots__ = ("id", "campaign_id", "round_id", "cell_id", "object_key", "kind", "proposed_class", "top_classes", "state", "claimed_by", "lease_expires_at", "round_number")
    ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_CLASS_FIELD_NUMBER: _ClassVar[int]
    TOP_CLASSES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_BY_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ROUND_NUMBER_FIELD_NUMBER: _ClassVar[int]
    id: str
    campaign_id: str
    round_id: str
    cell_id: str
    object_key: str
    kind: TaskKind
    proposed_class: str
    top_classes: _containers.RepeatedCompositeFieldContainer[ClassScore]
    state: TaskState
    claimed_by: str
    lease_expires_at: _timestamp_pb2.Timestamp
    round_number: int
    def __init__(self, id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., round_id: _Optional[str] = ..., cell_id: _Optional[str] = ..., object_key: _Optional[str] = ..., kind: _Optional[_Union[TaskKind, str]] = ..., proposed_class: _Optional[str] = ..., top_classes: _Optional[_Iterable[_Union[ClassScore, _Mapping]]] = ..., state: _Optional[_Union[TaskState, str]] = ..., claimed_by: _Optional[str] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., round_number: _Optional[int] = ...) -> None: ...

class ReviewQueue(_message.Message):
    __slots__ = ("name", "kind", "taxonomy", "dataset")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TAXONOMY_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    taxonomy: str
    dataset: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., taxonomy: _Optional[str] = ..., dataset: _Optional[str] = ...) -> None: ...

class CreateReviewTasksRequest(_message.Message):
    __slots__ = ("campaign_id", "round_id", "tasks", "queue", "requester", "round_number")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    ROUND_NUMBER_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    round_id: str
    tasks: _containers.RepeatedCompositeFieldContainer[NewReviewTask]
    queue: ReviewQueue
    requester: BatchRequester
    round_number: int
    def __init__(self, campaign_id: _Optional[str] = ..., round_id: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[NewReviewTask, _Mapping]]] = ..., queue: _Optional[_Union[ReviewQueue, _Mapping]] = ..., requester: _Optional[_Union[BatchRequester, str]] = ..., round_number: _Optional[int] = ...) -> None: ...

class CreateReviewTasksResponse(_message.Message):
    __slots__ = ("created", "already_present")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    created: int
    already_present: int
    def __init__(self, created: _Optional[int] = ..., already_present: _Optional[int] = ...) -> None: ...

class ClaimTasksRequest(_message.Message):
    __slots__ = ("campaign_id", "kind", "proposed_class", "limit", "lease_seconds")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_CLASS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    kind: TaskKind
    proposed_class: str
    limit: int
    lease_seconds: int
    def __init__(self, campaign_id: _Optional[str] = ..., kind: _Optional[_Union[TaskKind, str]] = ..., proposed_class: _Optional[str] = ..., limit: _Optional[int] = ..., lease_seconds: _Optional[int] = ...) -> None: ...

class ClaimTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[ReviewTask]
    def __init__(self, tasks: _Optional[_Iterable[_Union[ReviewTask, _Mapping]]] = ...) -> None: ...

class ReleaseTasksRequest(_message.Message):
    __slots__ = ("task_ids",)
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ReleaseTasksResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: int
    def __init__(self, released: _Optional[int] = ...) -> None: ...

class DecisionInput(_message.Message):
    __slots__ = ("client_decision_id", "task_id", "action", "class_code", "reason")
    CLIENT_DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CLASS_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    client_decision_id: str
    task_id: str
    action: DecisionAction
    class_code: str
    reason: str
    def __init__(self, client_decision_id: _Optional[str] = ..., task_id: _Optional[str] = ..., action: _Optional[_Union[DecisionAction, str]] = ..., class_code: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("id", "client_decision_id", "task_id", "action", "class_code", "user", "decided_at", "undone", "cell_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CLASS_CODE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    UNDONE_FIELD_NUMBER: _ClassVar[int]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    client_decision_id: str
    task_id: str
    action: DecisionAction
    class_code: str
    user: str
    decided_at: _timestamp_pb2.Timestamp
    undone: bool
    cell_id: str
    def __init__(self, id: _Optional[str] = ..., client_decision_id: _Optional[str] = ..., task_id: _Optional[str] = ..., action: _Optional[_Union[DecisionAction, str]] = ..., class_code: _Optional[str] = ..., user: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., undone: _Optional[bool] = ..., cell_id: _Optional[str] = ...) -> None: ...

class SubmitDecisionsRequest(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[DecisionInput]
    def __init__(self, decisions: _Optional[_Iterable[_Union[DecisionInput, _Mapping]]] = ...) -> None: ...

class SubmitDecisionsResponse(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...

class UndoDecisionRequest(_message.Message):
    __slots__ = ("client_decision_id", "reason")
    CLIENT_DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    client_decision_id: str
    reason: str
    def __init__(self, client_decision_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListDecisionsRequest(_message.Message):
    __slots__ = ("campaign_id", "round_id", "include_undone")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_UNDONE_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    round_id: str
    include_undone: bool
    def __init__(self, campaign_id: _Optional[str] = ..., round_id: _Optional[str] = ..., include_undone: _Optional[bool] = ...) -> None: ...

class ListDecisionsResponse(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...

class GetProgressRequest(_message.Message):
    __slots__ = ("campaign_id", "round_id")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    round_id: str
    def __init__(self, campaign_id: _Optional[str] = ..., round_id: _Optional[str] = ...) -> None: ...

class ProgressCount(_message.Message):
    __slots__ = ("round_id", "class_code", "kind", "open", "claimed", "decided")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_CODE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_FIELD_NUMBER: _ClassVar[int]
    DECIDED_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    class_code: str
    kind: TaskKind
    open: int
    claimed: int
    decided: int
    def __init__(self, round_id: _Optional[str] = ..., class_code: _Optional[str] = ..., kind: _Optional[_Union[TaskKind, str]] = ..., open: _Optional[int] = ..., claimed: _Optional[int] = ..., decided: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("counts", "open", "claimed", "decided")
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_FIELD_NUMBER: _ClassVar[int]
    DECIDED_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.RepeatedCompositeFieldContainer[ProgressCount]
    open: int
    claimed: int
    decided: int
    def __init__(self, counts: _Optional[_Iterable[_Union[ProgressCount, _Mapping]]] = ..., open: _Optional[int] = ..., claimed: _Optional[int] = ..., decided: _Optional[int] = ...) -> None: ...

class CreateUserRequest(_message.Message):
    __slots__ = ("name", "role")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: Role
    def __init__(self, name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ...) -> None: ...

class CreateUserResponse(_message.Message):
    __slots__ = ("user", "token")
    USER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    user: User
    token: str
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., token: _Optional[str] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class User(_message.Message):
    __slots__ = ("name", "role")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: Role
    def __init__(self, name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ...) -> None: ...

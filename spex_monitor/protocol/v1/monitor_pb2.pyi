from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Fields(_message.Message):
    __slots__ = ("values",)
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.ScalarMap[str, float]
    def __init__(self, values: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("name", "message", "start", "end")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    name: str
    message: int
    start: int
    end: int
    def __init__(self, name: _Optional[str] = ..., message: _Optional[int] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class Generation(_message.Message):
    __slots__ = ("prompt", "messages", "completion", "segments", "temperature", "top_p", "max_tokens")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    completion: str
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    temperature: float
    top_p: float
    max_tokens: int
    def __init__(self, prompt: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., completion: _Optional[str] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., max_tokens: _Optional[int] = ...) -> None: ...

class ObserveRequest(_message.Message):
    __slots__ = ("request_id", "model", "version", "text", "fields", "generation", "label", "confidence", "trace_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    version: str
    text: str
    fields: Fields
    generation: Generation
    label: str
    confidence: float
    trace_id: str
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., text: _Optional[str] = ..., fields: _Optional[_Union[Fields, _Mapping]] = ..., generation: _Optional[_Union[Generation, _Mapping]] = ..., label: _Optional[str] = ..., confidence: _Optional[float] = ..., trace_id: _Optional[str] = ...) -> None: ...

class ObserveResponse(_message.Message):
    __slots__ = ("sampled",)
    SAMPLED_FIELD_NUMBER: _ClassVar[int]
    sampled: bool
    def __init__(self, sampled: _Optional[bool] = ...) -> None: ...

class ObserveStreamResponse(_message.Message):
    __slots__ = ("observed", "sampled", "rejected")
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    observed: int
    sampled: int
    rejected: int
    def __init__(self, observed: _Optional[int] = ..., sampled: _Optional[int] = ..., rejected: _Optional[int] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("model", "text", "fields", "generation", "budget", "max_order", "top_k")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    MAX_ORDER_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    model: str
    text: str
    fields: Fields
    generation: Generation
    budget: int
    max_order: int
    top_k: int
    def __init__(self, model: _Optional[str] = ..., text: _Optional[str] = ..., fields: _Optional[_Union[Fields, _Mapping]] = ..., generation: _Optional[_Union[Generation, _Mapping]] = ..., budget: _Optional[int] = ..., max_order: _Optional[int] = ..., top_k: _Optional[int] = ...) -> None: ...

class Interaction(_message.Message):
    __slots__ = ("keys", "features", "fourier", "mobius")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    FOURIER_FIELD_NUMBER: _ClassVar[int]
    MOBIUS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    features: _containers.RepeatedScalarFieldContainer[int]
    fourier: float
    mobius: float
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., features: _Optional[_Iterable[int]] = ..., fourier: _Optional[float] = ..., mobius: _Optional[float] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("feature_keys", "interactions", "faithfulness", "inferences_used", "predicted_label", "seconds")
    FEATURE_KEYS_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    FAITHFULNESS_FIELD_NUMBER: _ClassVar[int]
    INFERENCES_USED_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_LABEL_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    feature_keys: _containers.RepeatedScalarFieldContainer[str]
    interactions: _containers.RepeatedCompositeFieldContainer[Interaction]
    faithfulness: float
    inferences_used: int
    predicted_label: str
    seconds: float
    def __init__(self, feature_keys: _Optional[_Iterable[str]] = ..., interactions: _Optional[_Iterable[_Union[Interaction, _Mapping]]] = ..., faithfulness: _Optional[float] = ..., inferences_used: _Optional[int] = ..., predicted_label: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class GetShiftReportRequest(_message.Message):
    __slots__ = ("model", "version", "window_id", "since_unix", "until_unix", "scope")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    window_id: int
    since_unix: float
    until_unix: float
    scope: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., window_id: _Optional[int] = ..., since_unix: _Optional[float] = ..., until_unix: _Optional[float] = ..., scope: _Optional[str] = ...) -> None: ...

class Contributor(_message.Message):
    __slots__ = ("keys", "baseline", "window", "delta", "exemplar_request_ids", "baseline_cooccurrence", "baseline_cooccurrence_low", "baseline_cooccurrence_high", "baseline_strength_present", "baseline_strength_present_ci", "baseline_present_requests", "window_cooccurrence", "window_cooccurrence_low", "window_cooccurrence_high", "window_strength_present", "window_strength_present_ci", "window_present_requests", "behaviour_delta", "behaviour_delta_ci", "mix_delta", "cooccurrence_measured", "mix_delta_ci", "baseline_exemplar_request_ids")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    EXEMPLAR_REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_COOCCURRENCE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_COOCCURRENCE_LOW_FIELD_NUMBER: _ClassVar[int]
    BASELINE_COOCCURRENCE_HIGH_FIELD_NUMBER: _ClassVar[int]
    BASELINE_STRENGTH_PRESENT_FIELD_NUMBER: _ClassVar[int]
    BASELINE_STRENGTH_PRESENT_CI_FIELD_NUMBER: _ClassVar[int]
    BASELINE_PRESENT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_COOCCURRENCE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_COOCCURRENCE_LOW_FIELD_NUMBER: _ClassVar[int]
    WINDOW_COOCCURRENCE_HIGH_FIELD_NUMBER: _ClassVar[int]
    WINDOW_STRENGTH_PRESENT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_STRENGTH_PRESENT_CI_FIELD_NUMBER: _ClassVar[int]
    WINDOW_PRESENT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOUR_DELTA_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOUR_DELTA_CI_FIELD_NUMBER: _ClassVar[int]
    MIX_DELTA_FIELD_NUMBER: _ClassVar[int]
    COOCCURRENCE_MEASURED_FIELD_NUMBER: _ClassVar[int]
    MIX_DELTA_CI_FIELD_NUMBER: _ClassVar[int]
    BASELINE_EXEMPLAR_REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    baseline: float
    window: float
    delta: float
    exemplar_request_ids: _containers.RepeatedScalarFieldContainer[str]
    baseline_cooccurrence: float
    baseline_cooccurrence_low: float
    baseline_cooccurrence_high: float
    baseline_strength_present: float
    baseline_strength_present_ci: float
    baseline_present_requests: float
    window_cooccurrence: float
    window_cooccurrence_low: float
    window_cooccurrence_high: float
    window_strength_present: float
    window_strength_present_ci: float
    window_present_requests: float
    behaviour_delta: float
    behaviour_delta_ci: float
    mix_delta: float
    cooccurrence_measured: bool
    mix_delta_ci: float
    baseline_exemplar_request_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., baseline: _Optional[float] = ..., window: _Optional[float] = ..., delta: _Optional[float] = ..., exemplar_request_ids: _Optional[_Iterable[str]] = ..., baseline_cooccurrence: _Optional[float] = ..., baseline_cooccurrence_low: _Optional[float] = ..., baseline_cooccurrence_high: _Optional[float] = ..., baseline_strength_present: _Optional[float] = ..., baseline_strength_present_ci: _Optional[float] = ..., baseline_present_requests: _Optional[float] = ..., window_cooccurrence: _Optional[float] = ..., window_cooccurrence_low: _Optional[float] = ..., window_cooccurrence_high: _Optional[float] = ..., window_strength_present: _Optional[float] = ..., window_strength_present_ci: _Optional[float] = ..., window_present_requests: _Optional[float] = ..., behaviour_delta: _Optional[float] = ..., behaviour_delta_ci: _Optional[float] = ..., mix_delta: _Optional[float] = ..., cooccurrence_measured: _Optional[bool] = ..., mix_delta_ci: _Optional[float] = ..., baseline_exemplar_request_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ShiftReport(_message.Message):
    __slots__ = ("model", "version", "window_id", "score", "p_value", "alarm", "order_share_baseline", "order_share_window", "first_order_ndcg", "input_drift_psi", "output_drift_psi", "top_contributors", "window_requests", "time_unix", "scope", "window_start_unix", "window_end_unix", "pods", "shift_p_value", "decisive_p_value", "decisive_tested", "decisive_tuples")
    class OrderShareBaselineEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class OrderShareWindowEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class InputDriftPsiEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class OutputDriftPsiEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    ORDER_SHARE_BASELINE_FIELD_NUMBER: _ClassVar[int]
    ORDER_SHARE_WINDOW_FIELD_NUMBER: _ClassVar[int]
    FIRST_ORDER_NDCG_FIELD_NUMBER: _ClassVar[int]
    INPUT_DRIFT_PSI_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DRIFT_PSI_FIELD_NUMBER: _ClassVar[int]
    TOP_CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_UNIX_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_UNIX_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    SHIFT_P_VALUE_FIELD_NUMBER: _ClassVar[int]
    DECISIVE_P_VALUE_FIELD_NUMBER: _ClassVar[int]
    DECISIVE_TESTED_FIELD_NUMBER: _ClassVar[int]
    DECISIVE_TUPLES_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    window_id: int
    score: float
    p_value: float
    alarm: bool
    order_share_baseline: _containers.ScalarMap[str, float]
    order_share_window: _containers.ScalarMap[str, float]
    first_order_ndcg: float
    input_drift_psi: _containers.ScalarMap[str, float]
    output_drift_psi: _containers.ScalarMap[str, float]
    top_contributors: _containers.RepeatedCompositeFieldContainer[Contributor]
    window_requests: float
    time_unix: float
    scope: str
    window_start_unix: float
    window_end_unix: float
    pods: int
    shift_p_value: float
    decisive_p_value: float
    decisive_tested: int
    decisive_tuples: _containers.RepeatedCompositeFieldContainer[DecisiveTuple]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., window_id: _Optional[int] = ..., score: _Optional[float] = ..., p_value: _Optional[float] = ..., alarm: _Optional[bool] = ..., order_share_baseline: _Optional[_Mapping[str, float]] = ..., order_share_window: _Optional[_Mapping[str, float]] = ..., first_order_ndcg: _Optional[float] = ..., input_drift_psi: _Optional[_Mapping[str, float]] = ..., output_drift_psi: _Optional[_Mapping[str, float]] = ..., top_contributors: _Optional[_Iterable[_Union[Contributor, _Mapping]]] = ..., window_requests: _Optional[float] = ..., time_unix: _Optional[float] = ..., scope: _Optional[str] = ..., window_start_unix: _Optional[float] = ..., window_end_unix: _Optional[float] = ..., pods: _Optional[int] = ..., shift_p_value: _Optional[float] = ..., decisive_p_value: _Optional[float] = ..., decisive_tested: _Optional[int] = ..., decisive_tuples: _Optional[_Iterable[_Union[DecisiveTuple, _Mapping]]] = ...) -> None: ...

class DecisiveTuple(_message.Message):
    __slots__ = ("keys", "baseline_decisive", "baseline_opportunities", "window_decisive", "window_opportunities", "p_value", "adjusted_p_value")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_DECISIVE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_OPPORTUNITIES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_DECISIVE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_OPPORTUNITIES_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    ADJUSTED_P_VALUE_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    baseline_decisive: int
    baseline_opportunities: int
    window_decisive: int
    window_opportunities: int
    p_value: float
    adjusted_p_value: float
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., baseline_decisive: _Optional[int] = ..., baseline_opportunities: _Optional[int] = ..., window_decisive: _Optional[int] = ..., window_opportunities: _Optional[int] = ..., p_value: _Optional[float] = ..., adjusted_p_value: _Optional[float] = ...) -> None: ...

class GetInteractionMapRequest(_message.Message):
    __slots__ = ("model", "version", "baseline", "window_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    baseline: bool
    window_id: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., baseline: _Optional[bool] = ..., window_id: _Optional[int] = ...) -> None: ...

class InteractionMapResponse(_message.Message):
    __slots__ = ("map", "requests", "key_tuples")
    MAP_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    KEY_TUPLES_FIELD_NUMBER: _ClassVar[int]
    map: bytes
    requests: float
    key_tuples: int
    def __init__(self, map: _Optional[bytes] = ..., requests: _Optional[float] = ..., key_tuples: _Optional[int] = ...) -> None: ...

class SetBaselineRequest(_message.Message):
    __slots__ = ("model", "version", "time_range", "window_id", "map")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_ID_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    time_range: TimeRange
    window_id: int
    map: bytes
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., time_range: _Optional[_Union[TimeRange, _Mapping]] = ..., window_id: _Optional[int] = ..., map: _Optional[bytes] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ("since_unix", "until_unix")
    SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_FIELD_NUMBER: _ClassVar[int]
    since_unix: float
    until_unix: float
    def __init__(self, since_unix: _Optional[float] = ..., until_unix: _Optional[float] = ...) -> None: ...

class SetBaselineResponse(_message.Message):
    __slots__ = ("requests", "key_tuples", "source")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    KEY_TUPLES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    requests: float
    key_tuples: int
    source: str
    def __init__(self, requests: _Optional[float] = ..., key_tuples: _Optional[int] = ..., source: _Optional[str] = ...) -> None: ...

class ListExplanationsRequest(_message.Message):
    __slots__ = ("model", "key_tuple", "since_unix", "limit")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KEY_TUPLE_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    model: str
    key_tuple: _containers.RepeatedScalarFieldContainer[str]
    since_unix: float
    limit: int
    def __init__(self, model: _Optional[str] = ..., key_tuple: _Optional[_Iterable[str]] = ..., since_unix: _Optional[float] = ..., limit: _Optional[int] = ...) -> None: ...

class ExplanationSummary(_message.Message):
    __slots__ = ("request_id", "version", "time_unix", "faithfulness", "inferences", "trace_id", "top")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    FAITHFULNESS_FIELD_NUMBER: _ClassVar[int]
    INFERENCES_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    version: str
    time_unix: float
    faithfulness: float
    inferences: int
    trace_id: str
    top: _containers.RepeatedCompositeFieldContainer[Interaction]
    def __init__(self, request_id: _Optional[str] = ..., version: _Optional[str] = ..., time_unix: _Optional[float] = ..., faithfulness: _Optional[float] = ..., inferences: _Optional[int] = ..., trace_id: _Optional[str] = ..., top: _Optional[_Iterable[_Union[Interaction, _Mapping]]] = ...) -> None: ...

class ListExplanationsResponse(_message.Message):
    __slots__ = ("explanations",)
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    explanations: _containers.RepeatedCompositeFieldContainer[ExplanationSummary]
    def __init__(self, explanations: _Optional[_Iterable[_Union[ExplanationSummary, _Mapping]]] = ...) -> None: ...

class ListShiftReportsRequest(_message.Message):
    __slots__ = ("model", "version", "since_unix", "limit", "scope")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    since_unix: float
    limit: int
    scope: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., since_unix: _Optional[float] = ..., limit: _Optional[int] = ..., scope: _Optional[str] = ...) -> None: ...

class ListShiftReportsResponse(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[ShiftReport]
    def __init__(self, reports: _Optional[_Iterable[_Union[ShiftReport, _Mapping]]] = ...) -> None: ...

class GetExplanationRequest(_message.Message):
    __slots__ = ("model", "request_id", "top_k")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_id: str
    top_k: int
    def __init__(self, model: _Optional[str] = ..., request_id: _Optional[str] = ..., top_k: _Optional[int] = ...) -> None: ...

class StoredExplanation(_message.Message):
    __slots__ = ("request_id", "model", "version", "time_unix", "faithfulness", "inferences", "trace_id", "feature_keys", "top", "text", "text_stored")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    FAITHFULNESS_FIELD_NUMBER: _ClassVar[int]
    INFERENCES_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    FEATURE_KEYS_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TEXT_STORED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    version: str
    time_unix: float
    faithfulness: float
    inferences: int
    trace_id: str
    feature_keys: _containers.RepeatedScalarFieldContainer[str]
    top: _containers.RepeatedCompositeFieldContainer[Interaction]
    text: str
    text_stored: bool
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., time_unix: _Optional[float] = ..., faithfulness: _Optional[float] = ..., inferences: _Optional[int] = ..., trace_id: _Optional[str] = ..., feature_keys: _Optional[_Iterable[str]] = ..., top: _Optional[_Iterable[_Union[Interaction, _Mapping]]] = ..., text: _Optional[str] = ..., text_stored: _Optional[bool] = ...) -> None: ...

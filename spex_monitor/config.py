"""Sidecar configuration: one YAML file plus ``SPEX_MONITOR_*`` environment overrides, validated by pydantic.

Environment variables override the file, nested with ``__``: ``SPEX_MONITOR_SERVER__GRPC_PORT=50052``,
``SPEX_MONITOR_ENGINE__BUDGET=1000``. Invalid configuration fails at start with every bad field's path and
the reason (``models.0.backend.endpoints: at least one replica host:port is required``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "SPEX_MONITOR_"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextLens(Strict):
    kind: Literal["text"] = "text"
    unit: Literal["words", "sentences", "tokens"] = "words"
    max_features: int = Field(64, ge=1, le=4096, description="cap; neighbours merge beyond it")
    strategy: Literal["mask", "remove", "attention"] = "mask"


class FieldsLens(Strict):
    kind: Literal["fields"]
    defaults: dict[str, Any] = Field(default_factory=dict, description="per-field baseline values")
    reference_path: Path | None = Field(None, description="JSON lines of reference records to draw from")
    draws: int = Field(8, ge=1, le=256)


class LocalBackendConfig(Strict):
    kind: Literal["local"] = "local"
    path: Path = Field(description="local transformers model folder (nothing is downloaded)")
    task: Literal["sequence-classification", "causal-lm"] = "sequence-classification"
    device: str = "auto"
    token_budget: int = Field(16384, ge=1)


class TLSConfig(Strict):
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None


class OIPBackendConfig(Strict):
    kind: Literal["oip"]
    endpoints: list[str]
    model_name: str
    model_version: str = ""
    input_name: str = "input"
    input_kind: Literal["bytes", "int64", "fp32"] = "bytes"
    output_name: str = "output"
    deadline_s: float = Field(5.0, gt=0)
    retries: int = Field(2, ge=0, le=10)
    max_concurrency: int = Field(4, ge=1, le=256)
    batch_rows: int = Field(64, ge=1)
    breaker_failures: int = Field(
        3, ge=1, le=100, description="consecutive failures that open a replica's breaker"
    )
    breaker_reset_s: float = Field(
        10.0, gt=0, description="how long an open breaker waits before one probe call"
    )
    tls: TLSConfig | None = None

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one replica host:port is required")
        for endpoint in value:
            host, _, port = endpoint.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{endpoint!r} is not host:port")
        return value


class EventsMapping(Strict):
    """How KServe inference-logger payloads (V1 or OIP-V2 JSON) map onto this model's input and output.

    The receiver reads text (text lens) or fields (fields lens) from the logged request and the predicted
    label and confidence from the logged response; the explanation itself is always recomputed by the
    model's configured backend, so only what the lens and the drift statistics need is read.
    """

    inference_services: list[str] = Field(
        default_factory=list,
        description="InferenceService names (the ce-inferenceservicename attribute) whose events belong to "
        "this model; empty: the InferenceService is named like the model",
    )
    text_input: str | None = Field(
        "input",
        min_length=1,
        description="V2: name of the BYTES input tensor holding the text; V1: key of the text in each "
        "object instance (a bare string instance is the text itself)",
    )
    fields: dict[str, str | int] = Field(
        default_factory=dict,
        description="field name -> where its value is: a V2 input tensor name / V1 instance key, or an "
        "integer column of a row (a V1 list instance, or the V2 tensor named by row_input)",
    )
    row_input: str | None = Field(
        None, description="V2: the input tensor whose rows are records, for integer columns in fields"
    )
    output: str | None = Field(
        None,
        min_length=1,
        description="V2: the output tensor to read (default: the first); V1: the key to read when each "
        "prediction is an object",
    )
    output_kind: Literal["auto", "label", "class_index", "logits", "probabilities"] = Field(
        "auto",
        description="how to read a prediction; auto: strings are labels, integers class indexes, vectors "
        "probabilities when they sum to 1 and logits otherwise",
    )
    labels: list[str] | None = Field(
        None,
        min_length=1,
        description="class names by index (default: the local model's id2label, else the index itself)",
    )
    version_from: Literal["config", "model_version", "endpoint"] = Field(
        "config",
        description="where the observation's version comes from: the model's configured version, the V2 "
        "response's model_version, or KServe's ce-endpoint attribute (default/canary)",
    )


class ModelConfig(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    version: str = "v1"
    lens: Annotated[TextLens | FieldsLens, Field(discriminator="kind")] = Field(default_factory=TextLens)
    backend: Annotated[LocalBackendConfig | OIPBackendConfig, Field(discriminator="kind")]
    sampling_rate: float = Field(0.05, ge=0.0, le=1.0)
    events: EventsMapping = Field(
        default_factory=EventsMapping,
        description="mapping of KServe inference-logger events onto this model (used when "
        "server.events_port is set)",
    )

    @model_validator(mode="after")
    def _events_match_lens(self) -> ModelConfig:
        if self.lens.kind == "fields" and not self.events.fields:
            raise ValueError("events.fields: required when lens.kind is 'fields' (name where each field is)")
        if self.lens.kind == "text" and self.events.text_input is None:
            raise ValueError("events.text_input: required when lens.kind is 'text'")
        return self


class EngineConfig(Strict):
    kind: Literal["proxyspex", "spex"] = "proxyspex"
    budget: int = Field(500, ge=16, le=1_000_000, description="inferences per explanation")
    max_order: int = Field(3, ge=1, le=8)


class BudgetConfig(Strict):
    inferences_per_second: float = Field(2000.0, gt=0)
    burst: float = Field(4000.0, gt=0)
    backend_seconds_per_hour: float | None = Field(None, gt=0)
    max_latency_s: float | None = Field(None, gt=0)
    max_queue_depth: int | None = Field(None, ge=1)
    wait_s: float = Field(0.0, ge=0)


class WindowConfig(Strict):
    seconds: float | None = Field(300.0, gt=0)
    requests: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _some_bound(self) -> WindowConfig:
        if self.seconds is None and self.requests is None:
            raise ValueError("set seconds and/or requests")
        return self


class BaselineConfig(Strict):
    windows: int = Field(2, ge=1, description="first windows merged into a baseline when none is pinned")
    rolling_decay: float | None = Field(None, gt=0, le=1)
    min_window_requests: int = Field(30, ge=1)
    alarm_p_value: float = Field(0.01, gt=0, lt=1)
    n_permutations: int = Field(1000, ge=99, le=100_000)
    file: Path | None = Field(None, description="InteractionMap bytes to pin as the baseline at start")


class StoreConfig(Strict):
    path: Path = Path("spex-monitor.db")
    store_text: bool = False
    redact: list[Literal["email", "phone", "digits"]] = Field(
        default_factory=lambda: ["email", "phone", "digits"],
        description="presets replaced by <email>/<phone>/<digits> in keys, vocabulary and stored text",
    )
    redact_patterns: list[str] = Field(
        default_factory=list, description="extra regular expressions replaced by <redacted>"
    )
    redact_hook: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="'module:function' (str -> str) applied after the regexes, for in-house rules",
    )
    text_ttl_s: float = Field(86_400.0, gt=0, description="stored text (store_text) is erased after this")
    retention_days: float = Field(30.0, gt=0, description="explanations, windows, reports older are deleted")
    max_bytes: int | None = Field(
        None,
        ge=65_536,
        description="cap on the database file; beyond it writes fail and the store is degraded",
    )
    purge_interval_s: float = Field(300.0, gt=0, description="how often retention and text TTL are applied")

    @field_validator("redact_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from exc
        return value


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    grpc_port: int = Field(50051, ge=0, le=65535)
    metrics_port: int = Field(9464, ge=0, le=65535)
    proxy_port: int | None = Field(None, ge=0, le=65535)
    events_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="HTTP port of the CloudEvents receiver for KServe's inference logger "
        "(predictor.logger.url); None: off, 0: any free port",
    )
    events_mode: Literal["all", "request"] = Field(
        "all",
        description="the InferenceService's logger.mode: all pairs each request with its response by ce-id; "
        "request observes requests alone (no predicted label, so no output drift)",
    )
    events_max_bytes: int = Field(
        1024 * 1024, ge=1024, description="largest event body accepted; larger ones get 413"
    )
    events_pair_ttl_s: float = Field(
        30.0, gt=0, description="how long a request (or response) waits for its partner before it is dropped"
    )
    events_max_pending: int = Field(
        10_000, ge=1, description="most events waiting for their partner; the oldest is dropped beyond it"
    )
    events_max_pending_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="cap on the body bytes held by events waiting for a partner"
    )
    upstream: str | None = Field(None, description="host:port of the OIP-V2 model server (proxy mode)")
    workers: int = Field(1, ge=1, le=64)
    queue_per_label: int = Field(64, ge=1)
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_concurrent_rpcs: int | None = Field(
        128,
        ge=1,
        description="calls the monitor's gRPC server runs or queues at once; beyond it callers get "
        "RESOURCE_EXHAUSTED at once (counted as dropped, reason overloaded) instead of waiting in an "
        "unbounded queue; None: no limit. Health checks share the limit (a standalone pod reads not-ready "
        "while overloaded; the chart's liveness probe uses the metrics port). The proxy port never sheds",
    )
    tls: TLSConfig | None = None
    admin_token: str | None = Field(
        None, description="required as 'authorization: Bearer <token>' on SetBaseline"
    )
    admin_identities: list[str] = Field(
        default_factory=list,
        description="client-certificate names (CN or SAN) allowed to call SetBaseline; needs tls.ca_file",
    )
    tick_s: float = Field(1.0, gt=0, description="how often windows are checked for closing")
    torch_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="intra-op threads for local models (1: leave the cores to the serving process)",
    )
    explain_in: Literal["process", "thread"] = Field(
        "process",
        description="where explanations run: 'process' (worker processes, at lower CPU priority, so model "
        "forwards and fits never hold the serving process's GIL) or 'thread' (in-process: no start-up "
        "cost, for tests and tiny models)",
    )
    worker_nice: int = Field(
        10, ge=0, le=19, description="niceness added to explain worker processes (0: same priority)"
    )

    @model_validator(mode="after")
    def _proxy_needs_upstream(self) -> ServerConfig:
        if self.proxy_port is not None and not self.upstream:
            raise ValueError("proxy_port is set but upstream (the model server's host:port) is not")
        if self.admin_identities and (self.tls is None or self.tls.ca_file is None):
            raise ValueError(
                "admin_identities needs mutual TLS: set tls.cert_file, tls.key_file and tls.ca_file"
            )
        if self.tls is not None and (self.tls.cert_file is None) != (self.tls.key_file is None):
            raise ValueError("tls: cert_file and key_file go together")
        return self

    @model_validator(mode="after")
    def _events_bounds(self) -> ServerConfig:
        if self.events_max_pending_bytes < self.events_max_bytes:
            raise ValueError("events_max_pending_bytes: must be at least events_max_bytes (one whole event)")
        return self


class Settings(Strict):
    models: list[ModelConfig] = Field(min_length=1)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    windows: WindowConfig = Field(default_factory=WindowConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    seed: int = 0

    @model_validator(mode="after")
    def _unique_models(self) -> Settings:
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique; repeated: {duplicates}")
        claimed: dict[str, str] = {}
        for index, model in enumerate(self.models):
            for service in model.events.inference_services or [model.name]:
                if claimed.setdefault(service, model.name) != model.name:
                    raise ValueError(
                        f"models.{index}.events.inference_services: InferenceService {service!r} is "
                        f"claimed by models {claimed[service]!r} and {model.name!r}"
                    )
        return self

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)


class ConfigError(ValueError):
    """Invalid configuration; ``errors`` holds ``(field path, reason)`` pairs."""

    def __init__(self, source: str, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        lines = "\n".join(f"  {path}: {reason}" for path, reason in errors)
        super().__init__(f"invalid configuration ({source}):\n{lines}")


def _set_path(data: dict, path: list[str], value: str) -> None:
    node = data
    for part in path[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = path[-1]
    parsed = yaml.safe_load(value)  # "1000" -> 1000, "true" -> True, "[a, b]" -> list
    if isinstance(node, list):
        node[int(last)] = parsed
    else:
        node[last] = parsed


def apply_env(data: dict, environ: dict[str, str] | None = None) -> dict:
    """Overlay ``SPEX_MONITOR_A__B__C=value`` onto the file's data (lower-cased keys, YAML-typed values)."""
    environ = dict(os.environ) if environ is None else environ
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if path:
            try:
                _set_path(data, path, value)
            except (IndexError, ValueError, TypeError) as exc:
                raise ConfigError(f"environment {name}", [(".".join(path), str(exc))]) from exc
    return data


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read the YAML file (optional), apply environment overrides, validate."""
    data: dict = {}
    source = "environment"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(source, [("<file>", exc.strerror or str(exc))]) from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(source, [("<yaml>", str(exc).replace("\n", " "))]) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(source, [("<root>", "the file must hold a mapping")])
        data = loaded or {}
    data = apply_env(data, environ)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        errors = [(".".join(str(p) for p in e["loc"]) or "<root>", e["msg"]) for e in exc.errors()]
        raise ConfigError(source, errors) from exc

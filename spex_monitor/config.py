"""Sidecar configuration: one YAML file plus ``SPEX_MONITOR_*`` environment overrides, validated by pydantic.

Environment variables override the file, nested with ``__`` and read by pydantic-settings:
``SPEX_MONITOR_SERVER__GRPC_PORT=50052``, ``SPEX_MONITOR_MODELS__0__VERSION=1.10``. A value is typed by the
field it sets (a token ``012345`` stays the string ``"012345"``, a version ``1.10`` stays ``"1.10"``); list
and mapping fields take JSON (``SPEX_MONITOR_SERVER__READER_TOKENS='["a", "b"]'``). Invalid configuration
fails at start with every bad field's path and the reason
(``models.0.backend.endpoints: at least one replica host:port is required``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from .config_env import ENV_PREFIX, EnvValueError, overlay
from .config_events import EventsMapping
from .config_llm import CausalBackendConfig, OpenAIBackendConfig, PromptLens, llm_pairing_problem
from .config_paths import missing_paths, resolve_paths
from .config_server import PortTLS, ServerConfig, Strict, TLSConfig
from .config_store import FleetConfig, StoreConfig
from .config_training import TrainingConfig

__all__ = [
    "BaselineConfig",
    "BudgetConfig",
    "CausalBackendConfig",
    "ConfigError",
    "EngineConfig",
    "EventsMapping",
    "FieldsLens",
    "FleetConfig",
    "LocalBackendConfig",
    "ModelConfig",
    "OIPBackendConfig",
    "OpenAIBackendConfig",
    "PortTLS",
    "PromptLens",
    "ServerConfig",
    "Settings",
    "StoreConfig",
    "TLSConfig",
    "TextLens",
    "TrainingConfig",
    "load_settings",
]


class TextLens(Strict):
    """``models[].lens`` for text inputs: the feature unit, the feature cap and the masking strategy."""

    kind: Literal["text"] = "text"
    unit: Literal["words", "sentences", "tokens"] = "words"
    max_features: int = Field(64, ge=1, le=4096, description="cap; neighbours merge beyond it")
    strategy: Literal["mask", "remove", "attention"] = "mask"


class FieldsLens(Strict):
    """``models[].lens`` for structured records: the baseline values masked fields take."""

    kind: Literal["fields"]
    defaults: dict[str, Any] = Field(default_factory=dict, description="per-field baseline values")
    reference_path: Path | None = Field(None, description="JSON lines of reference records to draw from")
    draws: int = Field(8, ge=1, le=256)


class LocalBackendConfig(Strict):
    """``models[].backend`` for a transformers model loaded in the sidecar's process."""

    kind: Literal["local"] = "local"
    path: Path = Field(description="local transformers model folder (nothing is downloaded)")
    task: Literal["sequence-classification", "causal-lm"] = "sequence-classification"
    device: str = "auto"
    token_budget: int = Field(16384, ge=1)


class OIPBackendConfig(Strict):
    """``models[].backend`` for remote OIP-V2 (KServe) gRPC replicas."""

    kind: Literal["oip"]
    endpoints: list[str]
    model_name: str
    model_version: str = ""
    input_name: str = "input"
    input_kind: Literal["bytes", "int64", "fp32"] = "bytes"
    output_name: str = "output"
    labels: list[str] | None = Field(None, description="class names by output index, for printing")
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


class ModelConfig(Strict):
    """One entry of ``models``: a monitored model, its lens, backend, sampling rate and event mapping."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    version: str = "v1"
    lens: Annotated[TextLens | FieldsLens | PromptLens, Field(discriminator="kind")] = Field(
        default_factory=TextLens
    )
    backend: Annotated[
        LocalBackendConfig | OIPBackendConfig | CausalBackendConfig | OpenAIBackendConfig,
        Field(discriminator="kind"),
    ]
    sampling_rate: float = Field(0.05, ge=0.0, le=1.0)
    events: EventsMapping = Field(
        default_factory=EventsMapping,
        description="mapping of KServe inference-logger events onto this model (used when "
        "server.events_port is set)",
    )
    training: TrainingConfig | None = Field(
        None, description="retrainable training set for `spex-monitor trace --data` (read by the CLI only)"
    )

    @model_validator(mode="after")
    def _events_match_lens(self) -> ModelConfig:
        problem = llm_pairing_problem(self.lens.kind, self.backend.kind)
        if problem:
            raise ValueError(problem)
        if self.lens.kind == "fields" and not self.events.fields:
            raise ValueError("events.fields: required when lens.kind is 'fields' (name where each field is)")
        if self.lens.kind == "text" and self.events.text_input is None:
            raise ValueError("events.text_input: required when lens.kind is 'text'")
        return self


class EngineConfig(Strict):
    """The ``engine`` section: which attribution engine explains, its budget and highest order."""

    kind: Literal["proxyspex", "spex"] = "proxyspex"
    budget: int = Field(500, ge=16, le=1_000_000, description="inferences per explanation")
    max_order: int = Field(3, ge=1, le=8)


class BudgetConfig(Strict):
    """The ``budget`` section: how much ablation work may run, and the backpressure limits."""

    inferences_per_second: float = Field(2000.0, gt=0)
    burst: float = Field(4000.0, gt=0)
    backend_seconds_per_hour: float | None = Field(None, gt=0)
    max_latency_s: float | None = Field(
        None,
        gt=0,
        description="backpressure: no new explanation while the backend's recent seconds per ablation batch "
        "(an EWMA of the runners' batch timings, forgotten after 30 s without a measurement) exceed this",
    )
    max_queue_depth: int | None = Field(
        None,
        ge=1,
        description="backpressure: no new background explanation while more than this many explanations "
        "(background workers and Explain calls) run against the backend",
    )
    wait_s: float = Field(0.0, ge=0)


class WindowConfig(Strict):
    """The ``windows`` section: when a tumbling window closes (by time, explained requests, or both)."""

    seconds: float | None = Field(300.0, gt=0)
    requests: int | None = Field(None, ge=1)
    align: bool = Field(
        True,
        description="cut time windows at multiples of `seconds` since the epoch (as Prometheus ranges are), "
        "so every pod's window ends at the same instants and a fleet window holds one window of each pod; "
        "false: a window starts at its first request",
    )

    @model_validator(mode="after")
    def _some_bound(self) -> WindowConfig:
        if self.seconds is None and self.requests is None:
            raise ValueError("set seconds and/or requests")
        return self


class BaselineConfig(Strict):
    """The ``baseline`` section: how baselines are built, rolled and compared, and when a window alarms."""

    windows: int = Field(2, ge=1, description="first windows merged into a baseline when none is pinned")
    rolling_decay: float | None = Field(None, gt=0, le=1)
    min_window_requests: int = Field(30, ge=1)
    alarm_p_value: float = Field(
        0.01, gt=0, lt=1, description="a window alarms when its permutation p-value is strictly below this"
    )
    n_permutations: int = Field(1000, ge=99, le=100_000)
    file: Path | None = Field(None, description="InteractionMap bytes to pin as the baseline at start")


class Settings(Strict):
    """The sidecar's whole configuration (read it with :func:`load_settings`).

    Unknown keys are refused. Beyond the fields' own checks, model names must be unique, an InferenceService
    may belong to one model only, and ``engine.budget`` must pay for the engine's smallest design at every
    model's feature cap.
    """

    models: list[ModelConfig] = Field(min_length=1)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    windows: WindowConfig = Field(default_factory=WindowConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    fleet: FleetConfig = Field(default_factory=FleetConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    seed: int = 0

    @model_validator(mode="after")
    def _fleet_needs_postgres(self) -> Settings:
        if self.fleet.aggregate and self.store.url is None:
            raise ValueError("fleet.aggregate: needs a shared PostgreSQL store (store.url)")
        if self.fleet.aggregate and self.fleet.window_s is None and self.windows.seconds is None:
            raise ValueError("fleet.window_s: required when windows.seconds is unset (count-based windows)")
        return self

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

    @model_validator(mode="after")
    def _engine_budget_pays_for_the_design(self) -> Settings:
        """An engine budget below the minimum design for a model's feature cap would fail every sampled
        request (each one counted as a failed explanation); refuse it here instead."""
        for model in self.models:
            n = _feature_cap(model)
            engine = self.engine
            problem = n and engine_budget_problem(engine.kind, engine.budget, engine.max_order, n)
            if problem:
                raise ValueError(f"engine.budget: {problem}; model {model.name!r} has up to {n} features")
        return self

    def model(self, name: str) -> ModelConfig:
        """The configuration of the model called ``name``.

        Raises:
            KeyError: no configured model has that name.
        """
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)


def _feature_cap(model: ModelConfig) -> int:
    """Most features one input of ``model`` can have (0: unknown until requests arrive)."""
    if isinstance(model.lens, TextLens | PromptLens):
        return model.lens.max_features
    return len(model.events.fields) or len(model.lens.defaults)


def engine_budget_problem(kind: str, budget: int, max_order: int, n_features: int) -> str | None:
    """Why ``budget`` cannot explain ``n_features`` with engine ``kind`` (``None`` when it can).

    Inputs of ``n <= 16`` features whose ``2^n`` masks fit the budget are measured exactly; larger ones need
    the engine's minimum design (ProxySPEX: a fixed floor; SPEX: groups x buckets x BCH delays).
    """
    from .attribution import SPEX, BudgetTooSmallError
    from .attribution.proxyspex import MIN_BUDGET

    if n_features <= 16 and 2**n_features <= budget:
        return None
    try:
        if kind == "spex":
            SPEX(budget=budget, max_order=max_order).design(n_features)
        elif budget < MIN_BUDGET:
            raise BudgetTooSmallError("ProxySPEX", budget, MIN_BUDGET, "or 2^n_features for exact")
    except BudgetTooSmallError as exc:
        return str(exc)
    return None


class ConfigError(ValueError):
    """Invalid configuration; ``errors`` holds ``(field path, reason)`` pairs."""

    def __init__(self, source: str, errors: list[tuple[str, str]]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  {path}: {reason}" for path, reason in errors)
        super().__init__(f"invalid configuration ({source}):\n{lines}")

    def __reduce__(self) -> tuple:  # survives pickling (it is raised inside explain worker processes)
        return (type(self), (self.source, self.errors), self.__dict__)


def apply_env(data: dict, environ: Mapping[str, str] | None = None) -> dict:
    """Overlay ``SPEX_MONITOR_A__B__C=value`` onto the file's data, through pydantic-settings (see
    :mod:`spex_monitor.config_env`): values are typed by their field; list and mapping fields take JSON."""
    try:
        return overlay(Settings, data, os.environ if environ is None else environ)
    except EnvValueError as exc:
        raise ConfigError("environment", [(exc.path, exc.reason)]) from exc


def load_settings(
    path: str | Path | None = None, environ: dict[str, str] | None = None, check_paths: bool = False
) -> Settings:
    """Read the YAML file (optional), apply environment overrides, validate, resolve relative paths against
    the file's folder (:mod:`.config_paths`). Raises :class:`ConfigError`: unreadable file, YAML syntax
    (as ``file:line:column``), invalid fields, and with ``check_paths`` paths that do not exist."""
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
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
            parts = (getattr(exc, "context", None), getattr(exc, "problem", None))
            reason = " ".join(str(p) for p in parts if p)
            raise ConfigError(source, [(where, f"YAML syntax: {reason or exc}")]) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(source, [("<root>", "the file must hold a mapping")])
        data = loaded or {}
    if any(name.upper().startswith(ENV_PREFIX) for name in (os.environ if environ is None else environ)):
        source += " + SPEX_MONITOR_* environment"
    data = apply_env(data, environ)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, validation_errors(exc)) from exc
    resolve_paths(settings, Path(path).parent if path is not None else Path.cwd())
    if check_paths and (missing := missing_paths(settings)):
        raise ConfigError(source, missing)
    return settings


def validation_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field path, reason)`` per error; a whole-object check that names its field (``"engine.budget:
    ..."``) is reported under that field."""
    errors = []
    for error in exc.errors():
        path = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        head, sep, rest = message.partition(": ")
        if sep and head.replace(".", "").replace("_", "").isalnum() and " " not in head:
            path, message = ".".join(p for p in (path, head) if p), rest
        errors.append((path or "<root>", message))
    return errors

"""The ``server`` section of the sidecar's configuration: ports, TLS per port, roles, and the bounds that
keep callers from exhausting the serving process (thread pool, per-class concurrency, stream timeouts,
Explain caps).

Split from :mod:`spex_monitor.config` (which re-exports everything here) to keep each module small.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Base of every configuration section: unknown keys are refused (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid")


class TLSConfig(Strict):
    """TLS of a listening port: its certificate and key, and the CA that verifies client certificates."""

    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = Field(
        None, description="CA of client certificates; set: clients must present one (mutual TLS)"
    )

    @model_validator(mode="after")
    def _pair(self) -> TLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


PortTLS = TLSConfig | Literal["inherit", "off"]
# gRPC threads kept free of user calls beyond the per-class caps below (rejections, reflection)
RESERVED_THREADS = 2


class ServerConfig(Strict):
    """The ``server`` section: listeners and their TLS, roles and credentials, and the limits that keep
    callers from exhausting the serving process.
    """

    host: str = "127.0.0.1"
    grpc_port: int = Field(50051, ge=0, le=65535)
    metrics_port: int = Field(
        9464,
        ge=0,
        le=65535,
        description="HTTP: /metrics, /api/top-interactions (readers role), /healthz (liveness) and /readyz "
        "(readiness: what serving needs)",
    )
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
    upstream_tls: TLSConfig | None = Field(
        None,
        description="TLS from the proxy to its upstream (ca_file verifies the server; cert/key: client "
        "certificate). Without it the proxy forwards the caller's authorization header only to a loopback "
        "upstream",
    )
    openai_proxy_port: int | None = Field(
        None, ge=0, le=65535, description="port of the OpenAI-compatible pass-through proxy (docs/llm.md)"
    )
    openai_upstream: str | None = Field(
        None, description="base URL of the OpenAI-compatible server the proxy forwards to (http://vllm:8000)"
    )
    openai_upstream_tls: TLSConfig | None = Field(
        None, description="CA / client certificate for an https openai_upstream"
    )
    openai_proxy_tls: PortTLS = Field(
        "inherit", description="TLS of the OpenAI proxy port: inherit (server.tls), off, or its own"
    )
    openai_max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="largest request body the OpenAI proxy forwards (413 beyond)"
    )
    openai_max_observed_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="largest answer (or stream) the proxy reads back into an observation; beyond it the call "
        "is still forwarded whole but not observed (dropped, reason too_large)",
    )
    openai_upstream_timeout_s: float = Field(600.0, gt=0, description="longest wait for upstream bytes")
    workers: int = Field(1, ge=1, le=64)
    queue_per_label: int = Field(64, ge=1)
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_concurrent_rpcs: int | None = Field(
        128,
        ge=1,
        description="calls the monitor's gRPC server runs or queues at once; beyond it callers get "
        "RESOURCE_EXHAUSTED at once (counted as dropped, reason overloaded) instead of waiting in an "
        "unbounded queue; None: no limit. gRPC health checks share this limit but never wait for a user "
        "call's thread (they run on their own); the chart's probes use /healthz and /readyz on the metrics "
        "port. The proxy port never sheds",
    )
    grpc_threads: int = Field(
        64,
        ge=4,
        le=1024,
        description="threads of the monitor's gRPC server; must exceed max_streams + explain_concurrency + "
        f"max_concurrent_reads + {RESERVED_THREADS}, so streams, Explain and reads can never hold them all",
    )
    max_streams: int = Field(
        32,
        ge=1,
        description="ObserveStream calls open at once (MonitorClient opens one per batch, per process); more "
        "get RESOURCE_EXHAUSTED at once",
    )
    stream_idle_timeout_s: float = Field(
        30.0, gt=0, description="an ObserveStream that sends nothing for this long is ended (CANCELLED)"
    )
    stream_max_duration_s: float = Field(
        300.0, gt=0, description="an ObserveStream is answered and closed after this long (open a new one)"
    )
    max_concurrent_reads: int = Field(
        4,
        ge=1,
        description="read RPCs (maps, reports, explanations) running at once; more get RESOURCE_EXHAUSTED",
    )
    explain_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="on-demand Explain calls running at once (their own executor); more get "
        "RESOURCE_EXHAUSTED at once",
    )
    explain_max_budget: int = Field(
        5000, ge=16, le=1_000_000, description="largest budget (inferences) an Explain call may ask for"
    )
    explain_timeout_s: float = Field(
        120.0, gt=0, description="deadline of an Explain call whose caller set none (or a longer one)"
    )
    explain_rate_per_minute: float = Field(
        6.0, gt=0, description="Explain calls per minute per caller (token bucket; burst explain_burst)"
    )
    explain_burst: int = Field(3, ge=1, description="Explain calls a caller may make at once after a pause")
    tls: TLSConfig | None = None
    proxy_tls: PortTLS = Field(
        "inherit", description="TLS of the proxy port: inherit (server.tls), off, or its own cert/key/ca"
    )
    events_tls: PortTLS = Field(
        "inherit", description="TLS of the events port: inherit (server.tls), off, or its own cert/key/ca"
    )
    metrics_tls: PortTLS = Field(
        "inherit",
        description="TLS of the metrics port: inherit (server.tls; a ca_file there makes client "
        "certificates optional here, so kubelet probes still reach /healthz), off, or its own",
    )
    admin_token: str | None = Field(
        None, description="bearer token of the admin role (SetBaseline; admins also hold every other role)"
    )
    admin_identities: list[str] = Field(
        default_factory=list,
        description="client-certificate names (CN or SAN) of the admin role; needs tls.ca_file",
    )
    reader_tokens: list[str] = Field(
        default_factory=list,
        description="bearer tokens of the readers role: GetInteractionMap, ListExplanations, GetShiftReport, "
        "ListShiftReports and /api/top-interactions",
    )
    reader_identities: list[str] = Field(
        default_factory=list, description="client-certificate names of the readers role; needs tls.ca_file"
    )
    explain_tokens: list[str] = Field(
        default_factory=list, description="bearer tokens of the explain role (the Explain RPC)"
    )
    explain_identities: list[str] = Field(
        default_factory=list, description="client-certificate names of the explain role; needs tls.ca_file"
    )
    trust_loopback: bool = Field(
        True,
        description="with no token or identity configured at all, callers from 127.0.0.1 / ::1 hold every "
        "role; set false wherever a service mesh may proxy remote callers from loopback",
    )
    log_request_content: bool = Field(
        False, description="let log lines carry words of requests (alarm keys, failures); off: ids only"
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
        if self.openai_proxy_port is not None and not self.openai_upstream:
            raise ValueError("openai_upstream: required when openai_proxy_port is set (http(s)://host:port)")
        if self.openai_upstream and not self.openai_upstream.startswith(("http://", "https://")):
            raise ValueError("openai_upstream: a base URL, http://host:port or https://host:port")
        identities = self.admin_identities or self.reader_identities or self.explain_identities
        if identities and (self.tls is None or self.tls.ca_file is None):
            raise ValueError(
                "admin_identities/reader_identities/explain_identities need mutual TLS: set tls.cert_file, "
                "tls.key_file and tls.ca_file"
            )
        if self.tls is not None and (self.tls.cert_file is None) != (self.tls.key_file is None):
            raise ValueError("tls: cert_file and key_file go together")
        for name in ("admin_token", "reader_tokens", "explain_tokens"):
            value = getattr(self, name)
            for token in [value] if isinstance(value, str) else value or []:
                if not token or token != token.strip():
                    raise ValueError(f"{name}: tokens must be non-empty, without surrounding spaces")
        return self

    @model_validator(mode="after")
    def _events_bounds(self) -> ServerConfig:
        if self.events_max_pending_bytes < self.events_max_bytes:
            raise ValueError("events_max_pending_bytes: must be at least events_max_bytes (one whole event)")
        return self

    @model_validator(mode="after")
    def _threads_cover_the_caps(self) -> ServerConfig:
        needed = self.max_streams + self.explain_concurrency + self.max_concurrent_reads + RESERVED_THREADS
        if self.grpc_threads < needed:
            raise ValueError(
                f"grpc_threads: {self.grpc_threads} cannot serve max_streams + explain_concurrency + "
                f"max_concurrent_reads + {RESERVED_THREADS} = {needed} at once and still answer Observe"
            )
        return self

    @property
    def auth_configured(self) -> bool:
        """True when any role has a token or an identity: then every role is default-deny."""
        return bool(
            self.admin_token
            or self.admin_identities
            or self.reader_tokens
            or self.reader_identities
            or self.explain_tokens
            or self.explain_identities
        )

    def port_tls(self, port: Literal["proxy", "events", "metrics", "openai_proxy"]) -> TLSConfig | None:
        """The TLS a port uses: its own setting, or ``server.tls`` when it says ``inherit``."""
        value = getattr(self, f"{port}_tls")
        if value == "off":
            return None
        if value == "inherit":
            return self.tls if self.tls is not None and self.tls.cert_file else None
        return value

"""Panels for the machinery around the monitor: backend replicas, scrape targets, the store, the KServe
inference-logger receiver. Not per model: they carry replica / instance / type labels."""

from __future__ import annotations

from .panels import Graph, prom
from .promql import (
    BACKEND_LATENCY,
    BACKEND_UP,
    EVENTS,
    EVENTS_PENDING,
    SCRAPE_UP,
    STORE_DEGRADED,
    STORE_ERRORS,
    aggregate,
    change,
    quantile,
)


def backend_up() -> Graph:
    return Graph(
        "Backend replica up",
        "1 while an ablation backend replica accepts work, 0 while its circuit breaker is open "
        "(BackendReplicaDown after 2 min). The in-process backend reports as replica 'local'.",
        [prom(aggregate("min", "replica", BACKEND_UP()), "{{replica}}")],
        unit="none",
        runbook="BackendReplicaDown",
        threshold=1,
        below_is_bad=True,
        min=0,
        max=1,
        step=True,
    )


def backend_latency() -> Graph:
    return Graph(
        "Ablation batch latency p95 by replica",
        "Latency of one masked batch on a backend replica; slow replicas stretch explanation latency.",
        [prom(quantile(0.95, BACKEND_LATENCY(), ["replica"]), "{{replica}}")],
        unit="s",
    )


def scrape_up() -> Graph:
    return Graph(
        "Sidecar scrape up",
        "Prometheus's own up series per sidecar target; 0 for 2 min fires SidecarDown (serving is "
        "unaffected, monitoring is blind for that pod).",
        [prom(SCRAPE_UP, "{{instance}}")],
        unit="none",
        runbook="SidecarDown",
        threshold=1,
        below_is_bad=True,
        min=0,
        max=1,
        step=True,
    )


def store_degraded() -> Graph:
    return Graph(
        "Sidecars with a degraded store",
        "1 while a sidecar's last store write failed (disk full, I/O error): metrics and alerts go on, but "
        "windows, reports and exemplar requests for `spex-monitor trace` are not persisted.",
        [prom(aggregate("sum", "instance", STORE_DEGRADED()), "{{instance}}")],
        threshold=1,
        min=0,
        step=True,
        width=12,
        runbook="StoreDegraded",
    )


def store_errors() -> Graph:
    return Graph(
        "Store write errors/s",
        "Failed writes to the sidecar's SQLite store, per sidecar.",
        [prom(aggregate("sum", "instance", change(STORE_ERRORS())), "{{instance}}")],
        unit="ops",
        width=12,
    )


def events_received() -> Graph:
    return Graph(
        "Inference-logger events/s by type",
        "CloudEvents posted by KServe's inference logger (attach mode 3), by type: request, response, or "
        "unknown. Refused or unpaired events are counted in 'Dropped/s by reason' (reasons event_*).",
        [prom(aggregate("sum", "type", change(EVENTS())), "{{type}}")],
        unit="reqps",
        width=12,
    )


def events_pending() -> Graph:
    return Graph(
        "Inference-logger events waiting for a partner",
        "Request or response halves held until the other half arrives (bounded by "
        "server.events_max_pending and events_pair_ttl_s); a steady climb means one half never comes "
        "(logger mode 'request' with the sidecar set to 'all', or a lossy network).",
        [prom(aggregate("sum", "instance", EVENTS_PENDING()), "{{instance}}")],
        width=12,
    )

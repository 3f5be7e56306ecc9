"""Configuration → the monitor's parts: store, redactor, monitor, pinned baselines.

Pure construction, no threads and no ports: :class:`~.app.Sidecar` calls these and then starts what they
built.
"""

from __future__ import annotations

from ..config import ConfigError, Settings
from ..explain.runner import LOCAL_REPLICA
from ..monitor import InteractionMap
from ..monitor.budget import Budget
from ..monitor.records import Explainer
from ..monitor.redaction import Redactor, load_hook
from ..monitor.sampling import StratifiedSampler
from ..monitor.store import SQLStore
from ..monitor.store_factory import make_store
from ..monitor.vocabulary import DocumentFrequency
from ..monitor.windows import TumblingWindows
from ..monitor.worker import Monitor


def replica_names(settings: Settings) -> list[str]:
    """Every replica the configured backends use: ``"local"`` for in-process models, else each endpoint."""
    names: list[str] = []
    for model in settings.models:
        backend = model.backend
        names += [LOCAL_REPLICA] if backend.kind in ("local", "causal") else list(backend.endpoints)
    return names


def open_store(settings: Settings) -> SQLStore:
    """The store ``store.*`` describes: the shared PostgreSQL at ``store.url`` when set, else SQLite at
    ``store.path`` (created when missing); see :func:`~spex_monitor.monitor.store_factory.make_store`.

    Raises:
        ConfigError: ``store.password_file`` unreadable.
        StoreUnavailableError: PostgreSQL refused the connection (the message names ``store.url``).
    """
    return make_store(settings.store)


def redactor(settings: Settings) -> Redactor | None:
    """The redactor ``store.redact*`` asks for, or ``None`` when it would change nothing.

    Raises:
        ConfigError: ``store.redact_hook`` cannot be imported or is not callable.
    """
    store = settings.store
    try:
        hook = load_hook(store.redact_hook) if store.redact_hook else None
    except (ImportError, ValueError) as exc:
        raise ConfigError("store.redact_hook", [("store.redact_hook", str(exc))]) from exc
    found = Redactor(store.redact, store.redact_patterns, hook)
    return found if found.active else None


def ablation_budget(settings: Settings) -> Budget:
    """The token bucket and backpressure gate ``budget.*`` describes (inferences per second, burst,
    backend seconds per hour, latency and queue-depth limits)."""
    b = settings.budget
    return Budget(
        b.inferences_per_second, b.burst, b.backend_seconds_per_hour, b.max_latency_s, b.max_queue_depth
    )


def build_monitor(settings: Settings, store: SQLStore, budget: Budget, explainer: Explainer) -> Monitor:
    """The monitor loop with sampler, windows and baseline rules from ``settings`` (its ``on_event`` and
    ``on_window`` hooks are left for the caller to attach).

    Raises:
        ConfigError: see :func:`redactor`.
    """
    return Monitor(
        explainer=explainer,
        sampler=StratifiedSampler(
            {m.name: m.sampling_rate for m in settings.models},
            settings.server.queue_per_label,
            settings.seed,
        ),
        budget=budget,
        windows=TumblingWindows(
            settings.windows.seconds, settings.windows.requests, align=settings.windows.align
        ),
        store=store,
        inferences_per_explanation=settings.engine.budget,
        budget_wait_s=settings.budget.wait_s,
        baseline_windows=settings.baseline.windows,
        rolling_decay=settings.baseline.rolling_decay,
        min_window_requests=settings.baseline.min_window_requests,
        n_permutations=settings.baseline.n_permutations,
        alarm_p_value=settings.baseline.alarm_p_value,
        redact=redactor(settings),
        vocabulary=DocumentFrequency(settings.store.min_document_frequency),
        log_content=settings.server.log_request_content,
    )


def pin_baselines(settings: Settings, monitor: Monitor) -> None:
    """Pin ``baseline.file`` (an :class:`InteractionMap` export) for the first model.

    Raises:
        ConfigError: the map holds fewer than ``baseline.min_window_requests`` explained requests.
        OSError, ValueError: the file cannot be read or decoded.
    """
    if settings.baseline.file is None:
        return
    pinned = InteractionMap.from_bytes(settings.baseline.file.read_bytes())
    if pinned.requests < settings.baseline.min_window_requests:
        reason = (
            f"the map holds {pinned.requests:g} explained requests; at least "
            f"{settings.baseline.min_window_requests} (baseline.min_window_requests) are needed"
        )
        raise ConfigError("baseline.file", [("baseline.file", reason)])
    first = settings.models[0]
    monitor.set_baseline(first.name, first.version, pinned, source=str(settings.baseline.file))

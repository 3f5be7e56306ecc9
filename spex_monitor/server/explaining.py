"""The sidecar's one way to run an explanation, with the accounting the rest of the sidecar reads.

Around each run on the :class:`~spex_monitor.explain.runner.ExplainRunner`: the budget's queue-depth
signal (explanations running against the backend), then per backend batch the replica's latency histogram
and per explanation the budget's latency signal (mean seconds per batch), and the replicas' health as the
explanation left it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

from ..backends.base import BatchTiming
from ..explain import ExplainRequest, ExplainResult
from ..explain.generation_values import context_interaction_share
from ..explain.runner import LOCAL_REPLICA, ExplainRunner
from ..lenses.generation import Generation
from ..monitor.budget import Budget
from ..monitor.records import Observation
from .metrics import Metrics
from .observations import explainable


class AccountedExplainer:
    """Runs explanations on a runner and accounts for them.

    Args:
        budget: the ablation budget (its backpressure signals are fed here).
        metrics: ``spex_monitor_backend_request_duration_seconds{replica}`` is observed here.
        replicas: every replica the configured backends use (``"local"`` for in-process models); all
            start healthy.
        context_prefixes: per LLM model (prompt lens), the key prefixes of its context segments; each
            explained observed generation feeds ``spex_monitor_generation_context_share_ratio{model}``.
    """

    def __init__(
        self,
        budget: Budget,
        metrics: Metrics,
        replicas: Iterable[str],
        context_prefixes: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.budget = budget
        self.metrics = metrics
        self.context_prefixes = dict(context_prefixes or {})
        self.runner: ExplainRunner | None = None  # set by the sidecar's start(): workers take seconds to load
        self._health: dict[str, bool] = dict.fromkeys(replicas, True)
        self._running = 0  # explanations running against the backend (the budget's queue-depth signal)
        self._lock = threading.Lock()

    def health(self) -> dict[str, bool]:
        """Replica name → accepts work, as the last explanation that used it saw."""
        return dict(self._health)

    def explain(self, request: ExplainRequest) -> ExplainResult:
        """Explain ``request`` on the runner; record its backend batches and replica health.

        Raises:
            RuntimeError: no runner yet (the sidecar is not started).
            Exception: whatever the explanation raised (its batches and health still recorded).
        """
        if self.runner is None:
            raise RuntimeError("the sidecar is not started")
        with self._lock:
            self._running += 1
            self.budget.signal(queue_depth=self._running)
        try:
            outcome = self.runner.explain(request)
        except Exception as exc:
            self._health.update(getattr(exc, "health", {}))
            self._record_batches(getattr(exc, "batches", []))
            raise
        finally:
            with self._lock:
                self._running -= 1
                self.budget.signal(queue_depth=self._running)
        self._health.update(outcome.health)
        self._record_batches(outcome.batches)
        return outcome

    def explain_observation(self, observation: Observation) -> ExplainResult:
        """The monitor's explainer: refuse text the lens cannot explain in linear time (a failed, counted
        explanation rather than minutes of a worker's CPU), then explain the observed input (a generation:
        the served completion, by teacher forcing, whatever temperature it was sampled at)."""
        if observation.generation is not None:  # validated on entry (server/generations.py)
            generation = cast(Generation, observation.generation)
            outcome = self.explain(ExplainRequest(observation.model, generation=generation))
            prefixes = self.context_prefixes.get(observation.model)
            if prefixes is not None:
                share = context_interaction_share(outcome.interactions, outcome.keys, prefixes)
                if share is not None:
                    self.metrics.context_share.labels(self.metrics.model_label(observation.model)).observe(share)
            return outcome
        explainable(observation.text)
        return self.explain(ExplainRequest(observation.model, observation.text, observation.fields))

    def _record_batches(self, batches: list[BatchTiming]) -> None:
        """Per batch: the replica's latency histogram; per explanation: the budget's latency signal (mean
        seconds per batch), which closes the gate past ``budget.max_latency_s``."""
        if batches:
            self.budget.signal(latency_s=sum(b.seconds for b in batches) / len(batches))
        for batch in batches:
            # local devices ("cpu", "cuda:0") are one replica; remote ones are named by their endpoint
            local = batch.device.split(":")[0] in ("cpu", "cuda", "mps")
            replica = LOCAL_REPLICA if local else batch.device
            self.metrics.backend_duration.labels(replica).observe(batch.seconds)

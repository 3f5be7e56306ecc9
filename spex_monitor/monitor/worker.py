"""The monitor loop: observe (O(1)) → sample → budget → explain → windows → compare → store.

``observe`` never waits on explanation work: it updates drift counters and offers the request to the
sampler. Explain workers take candidates, reserve ablation budget, explain them (the ``explainer`` wraps
lens + backend + engine), and fold the result into the current window. ``tick`` closes due windows,
compares each with its (model, version) baseline and stores the report. Shutdown finishes in-flight
explanations and persists open windows; what cannot finish is counted, never silently lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .baselines import Baselines
from .budget import Budget
from .closing import WindowCloser
from .events import (
    EventHook,
    ExplanationFinished,
    MonitorEvent,
    RequestDropped,
    RequestObserved,
    RequestSampled,
    StoreWriteFailed,
)
from .maps import InteractionMap
from .records import Explainer, LockedCounter, Observation, WindowResult
from .redaction import Redactor
from .sampling import Candidate, StratifiedSampler
from .store import ExplanationRecord, Store
from .vocabulary import DocumentFrequency, sanitize_key, sanitize_map
from .windows import ClosedWindow, TumblingWindows

log = logging.getLogger(__name__)
T = TypeVar("T")
RECENT_RESULTS = 16
MAX_INGEST = 10_000  # observations waiting for drift counting; beyond it they are dropped (counted)


@dataclass
class Monitor:
    """The monitor loop for every configured model (see the module docstring).

    Args:
        explainer, sampler, windows: explains one observation (lens + backend + engine); picks which are
            explained; the tumbling windows per (model, version).
        budget, budget_wait_s: each background explanation reserves ``inferences_per_explanation`` from
            ``budget``, waiting up to ``budget_wait_s`` seconds before it drops the candidate (``budget``).
        store: where explanations, windows, baselines and reports persist (``None``: memory only); a failed
            write is counted (``store_errors``), never raised.
        baseline_windows, rolling_decay, min_window_requests, n_permutations, alarm_p_value: the
            :class:`WindowCloser` settings (baselines, window size, permutation test, alarm threshold).
        on_window, on_event: get every :class:`WindowResult` and :class:`MonitorEvent`; failures are logged.
        redact, vocabulary, log_content: redaction of drift tokens, interaction keys and stored text; the
            document frequency below which words leave the process as ``<rare>``; may logs show words.
        counters, max_ingest: thread-safe counts (``observed``, ``dropped:<reason>``...); observations
            waiting for drift counting, beyond which they are dropped (``ingest_full``).
    """

    explainer: Explainer
    sampler: StratifiedSampler = field(default_factory=StratifiedSampler)
    budget: Budget = field(default_factory=Budget)
    windows: TumblingWindows = field(default_factory=TumblingWindows)
    store: Store | None = None
    inferences_per_explanation: int = 500
    budget_wait_s: float = 0.0
    baseline_windows: int = 2
    rolling_decay: float | None = None
    min_window_requests: int = 30
    n_permutations: int = 1000
    alarm_p_value: float = 0.01
    on_window: Callable[[WindowResult], None] | None = None
    on_event: EventHook | None = None
    # applied to every vocabulary token, interaction key and stored text
    redact: Redactor | None = None
    counters: LockedCounter = field(default_factory=LockedCounter)
    max_ingest: int = MAX_INGEST
    # words seen in fewer requests are replaced by <rare> in whatever leaves the process (None: off)
    vocabulary: DocumentFrequency | None = None
    # let log lines carry request words (the top interaction of an alarm); off: ids and numbers only
    log_content: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.counters, LockedCounter):
            self.counters = LockedCounter(self.counters)
        self.baselines = Baselines(self.store, self.persist, self.public_map, self.baseline_windows)
        self._closer = WindowCloser(
            self.baselines,
            self.store,
            self.persist,
            self.public_map,
            self.public_key,
            self.counters,
            min_window_requests=self.min_window_requests,
            n_permutations=self.n_permutations,
            alarm_p_value=self.alarm_p_value,
            rolling_decay=self.rolling_decay,
        )
        # observations waiting for drift counting (tokenising and redacting run off the caller's thread)
        self._ingest: deque[Observation] = deque()
        self._ingest_lock = threading.Lock()
        self._ingest_wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._in_flight = 0
        self._lock = threading.Lock()
        # the latest window results (for the demo and tests): each holds its window's map, so keep few —
        # a sidecar runs for months and the store has the rest
        self.results: deque[WindowResult] = deque(maxlen=RECENT_RESULTS)
        self.store_error: str | None = None  # the last failed write, None once writes succeed again

    # --------------------------------------------------------------------------------------- serving path
    def _emit(self, event: MonitorEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # metrics must never break the monitor
                log.exception("event hook failed")

    def persist(self, write: Callable[..., T], *args: object) -> T | None:
        """Run a store write; a full disk or a broken file degrades the store, never the monitor.

        Explanations and windows still flow to metrics and reports while the store is down; what could not be
        written is counted (``store_errors``) and reported once per failure streak.
        """
        if self.store is None:
            return None
        try:
            value = write(*args)
        except Exception as exc:
            self.counters.add("store_errors")
            if self.store_error is None:
                log.error("store write failed (%s); continuing without persistence", exc)
            self.store_error = f"{type(exc).__name__}: {exc}"
            self._emit(StoreWriteFailed(self.store_error))
            return None
        if self.store_error is not None:
            log.warning("store writes succeed again after: %s", self.store_error)
            self.store_error = None
        return value

    def _drop(self, model: str, reason: str) -> None:
        self.counters.add(f"dropped:{reason}")
        self._emit(RequestDropped(model, reason))

    def observe(self, observation: Observation) -> bool:
        """O(1) and never raises into the caller: True when the request became an explanation candidate.

        Only the sampling decision runs on the caller's thread; tokenising, redacting and drift counting
        happen on the ingest thread (:meth:`process_ingest`), so a long text never holds a serving thread.
        """
        try:
            self.counters.add("observed")
            self._emit(RequestObserved(observation.model, observation.version))
            if self._stop.is_set():
                self._drop(observation.model, "shutdown")
                return False
            with self._ingest_lock:
                queued = len(self._ingest) < self.max_ingest
                if queued:
                    self._ingest.append(observation)
            if queued:
                self._ingest_wake.set()
            else:
                self._drop(observation.model, "ingest_full")  # drift not counted; sampling goes on
            outcome = self.sampler.offer_reason(
                Candidate(observation.request_id, observation.model, observation.label, observation)
            )
            if outcome not in ("accepted", "reservoir_replaced"):
                self._drop(observation.model, outcome)
                return False
            if outcome == "reservoir_replaced":
                self._drop(observation.model, outcome)
            self.counters.add("sampled")
            self._emit(RequestSampled(observation.model, observation.version))
            return True
        except Exception:  # the serving path must never see our failures
            log.exception("observe failed")
            self._drop(str(getattr(observation, "model", "")), "internal_error")
            return False

    def process_ingest(self, limit: int | None = None) -> int:
        """Count waiting observations into their windows' drift counters (tokens redacted first).

        Runs on the ingest thread, and in :meth:`drain` / :meth:`tick` so nothing observed before them is
        left out. Returns how many were processed."""
        done = 0
        while limit is None or done < limit:
            with self._ingest_lock:
                if not self._ingest:
                    break
                observation = self._ingest.popleft()
            try:
                tokens = observation.tokens()
                if tokens is not None and self.redact is not None:
                    tokens = self.redact.words(tokens, observation.text)
                if tokens is not None and self.vocabulary is not None:
                    self.vocabulary.add(tokens)
                self.windows.observe(
                    observation.model, observation.version, tokens, observation.label, observation.confidence
                )
            except Exception:  # one bad observation must not stop the others
                log.exception("drift counting of %s failed", observation.request_id)
                self._drop(observation.model, "internal_error")
            done += 1
        return done

    # ------------------------------------------------------------------------------------------ workers
    def explain_one(self) -> bool:
        """Take and explain one candidate; False when there is nothing to do."""
        with self._lock:  # counted from before the take, so drain() never sees a taken candidate as done
            self._in_flight += 1
        try:
            candidate = self.sampler.take()
            if candidate is None:
                return False
            observation: Observation = candidate.payload
            if not self.budget.acquire(self.inferences_per_explanation, self.budget_wait_s):
                self._drop(observation.model, "budget")
                return True
            self._explain_and_fold(observation)
            return True
        finally:  # in flight until folded and stored
            with self._lock:
                self._in_flight -= 1

    def _explain_and_fold(self, observation: Observation) -> None:
        began = time.perf_counter()
        try:
            explained = self.explainer(observation)
            result, keys = explained.interactions, explained.keys
        except Exception as exc:
            # type and message (ours name limits and shapes, not request words), never the text itself
            log.warning(
                "explanation of %s failed: %s: %s", observation.request_id, type(exc).__name__, str(exc)[:300]
            )
            self.counters.add("explanations:failed")
            self._emit(
                ExplanationFinished(
                    observation.model,
                    observation.version,
                    status="failed",
                    seconds=time.perf_counter() - began,
                    faithfulness=None,
                    inferences=0,
                    request_id=observation.request_id,
                    trace_id=observation.trace_id,
                )
            )
            return
        elapsed = time.perf_counter() - began
        text = observation.text
        if self.redact is not None:
            keys = self.redact.words(keys, observation.text)
            text = self.redact(text) if text is not None else None
        self.budget.record(elapsed)
        self.counters.add("explanations:ok")
        self.counters.add("ablation_inferences", result.inferences_used)
        self._emit(
            ExplanationFinished(
                observation.model,
                observation.version,
                status="ok",
                seconds=elapsed,
                faithfulness=result.faithfulness,
                inferences=result.inferences_used,
                request_id=observation.request_id,
                trace_id=observation.trace_id,
            )
        )
        self.windows.add(observation.model, observation.version, result, keys, observation.request_id)
        if self.store is not None:
            self.persist(
                self.store.add_explanation,
                ExplanationRecord(
                    observation.request_id,
                    observation.model,
                    observation.version,
                    keys,
                    result.fourier,
                    result.faithfulness,
                    result.inferences_used,
                    trace_id=observation.trace_id,
                    text=text,
                ),
            )

    def drain(self, timeout_s: float = 120.0) -> int:
        """Explain every pending candidate in the calling thread, then wait (up to ``timeout_s``) for the
        ones started workers have in flight, so everything observed before the call is folded and stored.
        Returns how many this thread took."""
        taken = 0
        deadline = time.monotonic() + timeout_s
        self.process_ingest()
        while True:
            while self.explain_one():
                taken += 1
            with self._lock:
                idle = self._in_flight == 0
            if idle or time.monotonic() > deadline:
                return taken
            time.sleep(0.01)

    def start(self, workers: int = 1, idle_sleep_s: float = 0.05) -> None:
        """Start ``workers`` explain threads and one ingest thread, daemons that idle ``idle_sleep_s``."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    busy = self.explain_one()
                except Exception:  # a worker thread that dies silently would stop all explanation
                    log.exception("explain worker step failed")
                    self.counters.add("worker_errors")
                    busy = False
                if not busy:
                    self._stop.wait(idle_sleep_s)

        def ingest() -> None:
            while not self._stop.is_set():
                self._ingest_wake.wait(idle_sleep_s)
                self._ingest_wake.clear()
                self.process_ingest()

        for index in range(workers):
            thread = threading.Thread(target=loop, name=f"spex-explain-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        thread = threading.Thread(target=ingest, name="spex-ingest", daemon=True)
        thread.start()
        self._threads.append(thread)

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop taking work, let in-flight explanations finish, persist open windows."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        left = self.sampler.new_window()
        self.counters.add("dropped:shutdown", left)
        if left:
            self._emit(RequestDropped("", "shutdown", left))
        self.tick(force=True)

    # ------------------------------------------------------------------------------------ what leaves
    def public_map(self, m: InteractionMap) -> InteractionMap:
        """``m`` as it may leave the process or reach the store: rare words replaced by ``<rare>``."""
        return m if self.vocabulary is None else sanitize_map(m, self.vocabulary.common)

    def public_key(self, key: tuple[str, ...]) -> tuple[str, ...]:
        """``key`` as it may leave the process: rare words replaced by ``<rare>``."""
        return key if self.vocabulary is None else sanitize_key(key, self.vocabulary.common)

    # -------------------------------------------------------------------------------------- windows
    def set_baseline(
        self, model: str, version: str, baseline: InteractionMap, source: str = "api", pinned: bool = True
    ) -> None:
        """Use ``baseline`` from now on. ``pinned`` (an operator's choice: the API, a file) keeps the rolling
        baseline from drifting it; the automatic first-windows baseline is not pinned."""
        self.baselines.set((model, version), baseline, source=source, pinned=pinned)

    def baseline(self, model: str, version: str) -> InteractionMap | None:
        """The baseline windows of (model, version) are compared with, or ``None`` before there is one."""
        return self.baselines.get((model, version))

    def tick(self, force: bool = False) -> list[WindowResult]:
        """Close due windows; compare each with its baseline (building one from the first windows).

        A failure in one window (or in ``on_window``) is logged and counted; the other windows popped in
        the same tick are still compared, stored and reported."""
        self.process_ingest()
        out = []
        for closed in self.windows.close_due(force=force):
            if closed.map.requests == 0 and closed.map.drift.observed == 0:
                continue
            try:
                result = self._close(closed)
            except Exception:
                log.exception("closing the window of %s %s failed", closed.model, closed.version)
                self.counters.add("windows:failed")
                continue
            out.append(result)
            if self.on_window is not None:
                try:
                    self.on_window(result)
                except Exception:
                    log.exception("window hook failed for %s %s", closed.model, closed.version)
                    self.counters.add("windows:hook_failed")
        return out

    def _close(self, closed: ClosedWindow) -> WindowResult:
        result = self._closer.close(closed)
        self.results.append(result)
        self.counters.add("windows:closed")
        return result

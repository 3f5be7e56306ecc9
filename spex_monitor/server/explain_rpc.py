"""The on-demand Explain RPC's admission: role, per-caller rate, budget cap, ablation budget, concurrency,
its own executor and the caller's deadline.

An Explain is hundreds to thousands of model inferences — with an OIP backend, on production replicas. It
used to share the Observe thread pool, bypass the ablation budget and accept any budget (4,294,967,295 asked
numpy for 2 TiB). Now a call must hold the ``explain`` role, is rate-limited per caller, may ask for at most
``server.explain_max_budget`` inferences, reserves them from the same token bucket as the background
explanations (``budget.*``), runs on ``server.explain_concurrency`` threads of its own (more calls at once
are refused, not queued), and stops after the batch in flight once the caller's deadline (or
``server.explain_timeout_s``) passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import replace

import grpc

from ..config_server import ServerConfig
from ..explain import ExplainDeadlineError, ExplainRequest, ExplainResult
from ..monitor.budget import Budget
from .auth import Caller, RateLimiter
from .limits import Slots

MAX_ORDER = 8


class Refusal(Exception):  # noqa: N818 - an answer, not an error of ours
    """The call cannot run now: answer it with ``code`` and ``details`` (raised out of ``run``, where a
    ``context.abort`` would be caught by the caller's own error mapping)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        self.details = details
        super().__init__(details)

    def __reduce__(self) -> tuple:
        return (type(self), (self.code, self.details), self.__dict__)


class ExplainAdmission:
    """Admits, bounds and runs on-demand explanations (see the module docstring).

    Args:
        server: the ``server.explain_*`` limits.
        default_budget: ``engine.budget``, used when a call asks for 0 (and never capped below).
        budget_gate: the ablation token bucket shared with background explanations.
        explain: runs one admitted explanation.
    """

    def __init__(
        self,
        server: ServerConfig,
        default_budget: int,
        budget_gate: Budget,
        explain: Callable[[ExplainRequest], ExplainResult],
    ) -> None:
        self.default_budget = default_budget
        self.budget_gate = budget_gate
        self.explain = explain
        self.max_budget = max(server.explain_max_budget, default_budget)
        self.timeout_s = server.explain_timeout_s
        self.rate = RateLimiter(server.explain_rate_per_minute, server.explain_burst)
        self.rate_per_minute = server.explain_rate_per_minute
        self.slots = Slots(server.explain_concurrency)
        self._executor = futures.ThreadPoolExecutor(
            server.explain_concurrency, thread_name_prefix="spex-explain"
        )

    def check_request(self, budget: int, max_order: int, context: grpc.ServicerContext) -> int:
        """The budget the call will spend; INVALID_ARGUMENT for one outside [16, the cap]."""
        if budget and budget < 16:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "budget: at least 16 (or 0 for the default)")
        if budget > self.max_budget:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"budget: at most {self.max_budget} inferences (server.explain_max_budget)",
            )
        if max_order > MAX_ORDER:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"max_order: at most {MAX_ORDER} (or 0)")
        return budget or self.default_budget

    def run(self, caller: Caller, context: grpc.ServicerContext, request: ExplainRequest) -> ExplainResult:
        """Admit and run one explanation (``request.budget`` already checked by :meth:`check_request`);
        :class:`Refusal` with the status to answer when it cannot."""
        budget = int(request.budget or 0)
        wait = self.rate.take(caller.identity)
        if wait > 0:
            raise Refusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"explain: this caller's rate limit ({self.rate_per_minute:g} per minute, "
                f"server.explain_rate_per_minute) is reached; retry in {wait:.0f}s",
            )
        if not self.slots.acquire():  # before the budget: a refused call must not spend inferences
            raise Refusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"explain: {self.slots.limit} explanations are running (server.explain_concurrency)",
            )
        budget_gate = self.budget_gate
        reason = budget_gate.blocked_reason(budget)
        if reason == "larger_than_burst" or not budget_gate.acquire(budget, 0.0):
            self.slots.release()
            if reason == "larger_than_burst":
                raise Refusal(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"budget: {budget} inferences exceed budget.burst ({budget_gate.burst:g})",
                )
            raise Refusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"budget: the ablation budget has no room now ({reason or 'rate'}); retry later",
            )
        handed_over = False  # from then on the slot is freed when the work ends, not when the caller leaves
        try:
            remaining = context.time_remaining()
            seconds = min(self.timeout_s, remaining) if remaining is not None else self.timeout_s
            deadline = time.time() + seconds
            began = time.perf_counter()
            future = self._executor.submit(self.explain, replace(request, deadline=deadline))
            future.add_done_callback(lambda _: self.slots.release())
            handed_over = True
            try:
                outcome = future.result(timeout=seconds + 1.0)  # the engine stops itself at the deadline
            except (futures.TimeoutError, ExplainDeadlineError) as exc:
                future.cancel()  # still queued: it never runs (running: its slot frees when it ends)
                took = time.perf_counter() - began
                raise Refusal(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"deadline: the explanation was stopped after {took:.1f}s ({type(exc).__name__}); "
                    "ask for a smaller budget or a longer deadline",
                ) from exc
            budget_gate.record(time.perf_counter() - began)
            return outcome
        finally:
            if not handed_over:
                self.slots.release()

    def close(self) -> None:
        """Stop the executor; queued calls are cancelled."""
        self._executor.shutdown(wait=False, cancel_futures=True)

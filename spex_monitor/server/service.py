"""The gRPC MonitorService: thin translation between protobuf messages and the monitor.

Errors map to status codes with the offending field named: INVALID_ARGUMENT (bad input),
RESOURCE_EXHAUSTED (oversized messages, enforced by the server's limits; more calls at once than
``server.max_concurrent_rpcs``), UNAVAILABLE (backend down), FAILED_PRECONDITION (no baseline yet; the
model answered with NaN/inf or the wrong shape — the caller's input was fine), NOT_FOUND (no such
window), PERMISSION_DENIED (a caller without the role the method needs: admin, readers or explain; see
``auth.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from ..attribution import BudgetTooSmallError, ValueFunctionError
from ..backends.oip import BackendUnavailableError, ReplicaResponseError
from ..config import Settings
from ..explain import ExplainRequest, ExplainResult
from ..explain.runner import ExplainWorkerLostError
from ..monitor.store import Store
from ..monitor.worker import Monitor, Observation
from ..protocol.v1 import monitor_pb2 as pb
from ..protocol.v1 import monitor_pb2_grpc as pb_grpc
from .auth import Authorizer
from .explain_rpc import ExplainAdmission, Refusal
from .generations import generation_from_pb
from .limits import Slots, StreamWatchdog
from .metrics import Metrics
from .observations import Intake, InvalidObservation, check_input, explainable
from .registration import BadMessage, valid_items
from .report_rpcs import ReportRPCs

log = logging.getLogger(__name__)


class MonitorServicer(ReportRPCs, pb_grpc.MonitorServiceServicer):
    """The ``spex_monitor.v1.MonitorService`` RPCs over the narrow things they use.

    Args:
        settings: limits (``server.*``), baseline thresholds (``baseline.*``) and models' default versions.
        monitor: where observations go; baselines, public keys and maps come from it.
        store: windows, reports and explanations for the read RPCs.
        metrics: drops are counted here.
        authorizer: who holds which role (see :mod:`.auth`).
        intake: the configured models as entry paths see them (versions, lens kinds, version gate).
        explain: runs one on-demand explanation (the sidecar's accounted runner).
    """

    def __init__(
        self,
        settings: Settings,
        monitor: Monitor,
        store: Store,
        metrics: Metrics,
        authorizer: Authorizer,
        intake: Intake,
        explain: Callable[[ExplainRequest], ExplainResult],
    ) -> None:
        server = settings.server
        self.settings = settings
        self.monitor = monitor
        self.store = store
        self.metrics = metrics
        self.authorizer = authorizer
        self.intake = intake
        self.reads = Slots(server.max_concurrent_reads)
        self.streams = Slots(server.max_streams)
        self.watchdog = StreamWatchdog(server.stream_idle_timeout_s)
        self.stream_max_s = server.stream_max_duration_s
        self.explain_admission = ExplainAdmission(server, settings.engine.budget, monitor.budget, explain)

    def close(self) -> None:
        """Stop the stream watchdog and the Explain executor."""
        self.watchdog.close()
        self.explain_admission.close()

    def _observation(self, request: pb.ObserveRequest) -> tuple[Observation | None, str]:
        kind = request.WhichOneof("input")
        try:
            generation = generation_from_pb(request.generation) if kind == "generation" else None
            return self.intake.build(
                request_id=request.request_id,
                model=request.model,
                version=request.version,
                label=request.label,
                confidence=request.confidence,
                text=request.text if kind == "text" else None,
                fields=dict(request.fields.values) if kind == "fields" else None,
                trace_id=request.trace_id,
                generation=generation,
            ), ""
        except InvalidObservation as exc:
            return None, str(exc)

    # ---------------------------------------------------------------------------------------- observe
    def Observe(self, request: pb.ObserveRequest, context: grpc.ServicerContext) -> pb.ObserveResponse:
        """Record one served request (no role needed); ``sampled`` says whether it became an explanation
        candidate.

        Status codes:
            INVALID_ARGUMENT: naming the field, for a request the monitor cannot take (counted as an
                ``invalid`` drop): ``request_id`` missing or over 256 characters; an unknown model; no
                input, or text for a fields model or the reverse; text too long or blank; a string that is
                not valid Unicode; a malformed version, or a new one past the model's 16; a label or trace
                id too long; a confidence neither 0 (unknown) nor in (0, 1]; empty, too many, badly
                named or non-finite fields; a generation breaking the bounds of :mod:`.generations`
                (``generation.*`` fields named).
        """
        observation, problem = self._observation(request)
        if observation is None:
            self.metrics.drop(request.model, "invalid")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        return pb.ObserveResponse(sampled=self.monitor.observe(observation))

    def ObserveStream(self, request_iterator: Any, context: grpc.ServicerContext) -> pb.ObserveStreamResponse:
        """Streams are capped (``server.max_streams``), cancelled after ``stream_idle_timeout_s`` without a
        message, and answered after ``stream_max_duration_s`` (later messages are not read)."""
        if not self.streams.acquire():
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"stream: {self.streams.limit} ObserveStream calls are open (server.max_streams)",
            )
        key = self.watchdog.watch(context)
        ends = time.monotonic() + self.stream_max_s
        observed = sampled = rejected = 0
        undecodable = [0]

        def bad(message: BadMessage) -> None:
            undecodable[0] += 1
            self.metrics.drop("", "invalid")

        try:
            for request in valid_items(request_iterator, bad):
                self.watchdog.touch(key)
                observation, _ = self._observation(request)
                if observation is None:
                    rejected += 1
                    self.metrics.drop(request.model, "invalid")
                else:
                    observed += 1
                    sampled += int(self.monitor.observe(observation))
                if time.monotonic() > ends:
                    break
        finally:
            self.watchdog.forget(key)
            self.streams.release()
        rejected += undecodable[0]
        return pb.ObserveStreamResponse(observed=observed, sampled=sampled, rejected=rejected)

    # ---------------------------------------------------------------------------------------- explain
    def Explain(self, request: pb.ExplainRequest, context: grpc.ServicerContext) -> pb.ExplainResponse:
        """Explain one input now on the model's backend (``explain`` role); answers the feature keys, the
        ``top_k`` (default 20) strongest terms with their Fourier and Möbius coefficients, faithfulness (R²),
        inferences used, the predicted label and the wall time in seconds.

        Status codes:
            PERMISSION_DENIED: the caller lacks the ``explain`` role.
            INVALID_ARGUMENT: missing or unknown model; missing, wrong-kind, oversized, blank or non-Unicode
                input, or a word over 1000 characters; a generation whose messages, completion or segments
                break the bounds of :mod:`.generations` (the field is named: ``generation.segments[1].end``),
                or whose prompt and completion exceed the model's context; a budget below 16 (0 = the
                configured one), above
                ``server.explain_max_budget`` or above ``budget.burst``; ``max_order`` above 8; a budget below
                the engine's smallest design; another ``ValueError`` from the explanation.
            RESOURCE_EXHAUSTED: the caller's rate limit, ``server.explain_concurrency`` calls already running,
                or no room in the ablation budget now.
            DEADLINE_EXCEEDED: stopped at the caller's deadline or ``server.explain_timeout_s``.
            UNAVAILABLE: the backend is unreachable or the explain worker was lost.
            FAILED_PRECONDITION: the model answered NaN/inf or the wrong shape.
            INTERNAL: any other failure of the model or engine.
        """
        caller = self._require(context, "explain")
        self._model(request.model, context)
        kind = request.WhichOneof("input")
        generation = None
        try:
            if kind == "generation":
                generation = generation_from_pb(request.generation)
            check_input(
                request.model,
                self.intake.kinds.get(request.model),
                request.text if kind == "text" else None,
                dict(request.fields.values) if kind == "fields" else None,
                generation,
            )
            explainable(request.text if kind == "text" else None)
        except InvalidObservation as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        admission = self.explain_admission
        budget = admission.check_request(request.budget, request.max_order, context)
        began = time.perf_counter()
        try:
            outcome = admission.run(
                caller,
                context,
                ExplainRequest(
                    model=request.model,
                    text=request.text if kind == "text" else None,
                    fields=dict(request.fields.values) if kind == "fields" else None,
                    budget=budget,
                    max_order=request.max_order or None,
                    generation=generation,
                ),
            )
        except Refusal as refusal:
            context.abort(refusal.code, refusal.details)
        except (BackendUnavailableError, ExplainWorkerLostError) as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"backend: {exc}")
        except (ValueFunctionError, ReplicaResponseError) as exc:  # the model's answer, not the request
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"model output: {exc}"[:500])
        except BudgetTooSmallError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"budget: {exc}"[:500])
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:  # a model or engine failure is ours, not the caller's: say so, stay up
            log.exception("on-demand explanation failed")
            context.abort(grpc.StatusCode.INTERNAL, f"explain: {type(exc).__name__}: {exc}"[:500])
        result, keys = outcome.interactions, outcome.keys
        mobius = result.to_mobius()
        response = pb.ExplainResponse(
            feature_keys=keys,
            faithfulness=result.faithfulness,
            inferences_used=result.inferences_used,
            predicted_label=outcome.label,
            seconds=time.perf_counter() - began,
        )
        for term, coef in result.top(request.top_k or 20):
            response.interactions.add(
                keys=[keys[i] for i in term], features=list(term), fourier=coef, mobius=mobius.get(term, 0.0)
            )
        return response

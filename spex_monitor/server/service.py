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
from ..monitor import InteractionMap, compare_maps
from ..monitor.store import Store
from ..monitor.windows import baseline_from_windows
from ..monitor.worker import Monitor, Observation
from ..protocol.v1 import monitor_pb2 as pb
from ..protocol.v1 import monitor_pb2_grpc as pb_grpc
from .auth import Authorizer, Caller, Role
from .explain_rpc import ExplainAdmission, Refusal
from .limits import Slots, StreamWatchdog
from .messages import report_message, stored_report_message
from .metrics import Metrics
from .observations import Intake, InvalidObservation, check_input, explainable
from .registration import BadMessage, valid_items

log = logging.getLogger(__name__)


def _capped(method: Any) -> Any:
    """Run a read RPC within ``server.max_concurrent_reads`` (RESOURCE_EXHAUSTED at once beyond it)."""

    def wrapper(self: MonitorServicer, request: Any, context: grpc.ServicerContext) -> Any:
        if not self.reads.acquire():
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"reads: {self.reads.limit} read calls are running (server.max_concurrent_reads)",
            )
        try:
            return method(self, request, context)
        finally:
            self.reads.release()

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


class MonitorServicer(pb_grpc.MonitorServiceServicer):
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

    # ---------------------------------------------------------------------------------------- helpers
    def _model(self, name: str, context: grpc.ServicerContext, field: str = "model") -> str:
        if not name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: required")
        if name not in self.intake.versions:
            known = sorted(self.intake.versions)
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"{field}: unknown model {name!r}; configured: {known}"
            )
        return name

    def _require(self, context: grpc.ServicerContext, role: Role) -> Caller:
        """The caller, if it holds ``role`` (see :mod:`.auth`); else PERMISSION_DENIED."""
        authorizer = self.authorizer
        caller = authorizer.grpc_caller(context)
        if not caller.holds(role):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, authorizer.denial(role))
        return caller

    def _observation(self, request: pb.ObserveRequest) -> tuple[Observation | None, str]:
        kind = request.WhichOneof("input")
        try:
            return self.intake.build(
                request_id=request.request_id,
                model=request.model,
                version=request.version,
                label=request.label,
                confidence=request.confidence,
                text=request.text if kind == "text" else None,
                fields=dict(request.fields.values) if kind == "fields" else None,
                trace_id=request.trace_id,
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
                named or non-finite fields.
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
                input, or a word over 1000 characters; a budget below 16 (0 = the configured one), above
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
        try:
            check_input(
                request.model,
                self.intake.kinds.get(request.model),
                request.text if kind == "text" else None,
                dict(request.fields.values) if kind == "fields" else None,
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

    # ----------------------------------------------------------------------------------------- reports
    @_capped
    def GetShiftReport(
        self, request: pb.GetShiftReportRequest, context: grpc.ServicerContext
    ) -> pb.ShiftReport:
        """A shift report of (model, version; version "" = the configured one), ``readers`` role: the latest
        stored report (of ``window_id`` when set), or, with ``since_unix``/``until_unix``, a fresh comparison
        of the baseline with the merged stored windows of that range (keys through the ``<rare>`` filter).

        Status codes:
            PERMISSION_DENIED: the caller lacks the ``readers`` role.
            INVALID_ARGUMENT: missing or unknown model.
            RESOURCE_EXHAUSTED: ``server.max_concurrent_reads`` read calls are running.
            FAILED_PRECONDITION: no baseline yet for (model, version).
            NOT_FOUND: no windows in the range, or no stored report (for that window).
        """
        self._require(context, "readers")
        self._model(request.model, context)
        version = request.version or self.settings.model(request.model).version
        baseline = self.monitor.baseline(request.model, version)
        if baseline is None:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"baseline: none yet for {request.model} {version} (set one or wait for the first windows)",
            )
        store = self.store
        if request.since_unix or request.until_unix:
            maps = [
                w[3]
                for w in store.windows(
                    request.model, version, request.since_unix, request.until_unix or float("inf")
                )
            ]
            if not maps:
                context.abort(grpc.StatusCode.NOT_FOUND, "since_unix/until_unix: no windows in that range")
            report = compare_maps(
                baseline,
                baseline_from_windows(maps),
                n_permutations=self.settings.baseline.n_permutations,
            )
            message = report_message(
                request.model,
                version,
                0,
                report,
                report.p_value < self.settings.baseline.alarm_p_value,
            )
            for contributor in message.top_contributors:
                public = self.monitor.public_key(tuple(contributor.keys))
                contributor.keys[:] = list(public)
            return message
        reports = store.reports(request.model, version=version, window_id=request.window_id or None, limit=1)
        if not reports:
            context.abort(grpc.StatusCode.NOT_FOUND, "window_id: no shift report yet")
        return stored_report_message(request.model, version, reports[-1])

    @_capped
    def GetInteractionMap(
        self, request: pb.GetInteractionMapRequest, context: grpc.ServicerContext
    ) -> pb.InteractionMapResponse:
        """The encoded interaction map (rare words as ``<rare>``) of (model, version), ``readers`` role: the
        baseline with ``baseline``, else window ``window_id`` or, when it is 0, the latest window.

        Status codes:
            PERMISSION_DENIED: the caller lacks the ``readers`` role.
            INVALID_ARGUMENT: missing or unknown model.
            RESOURCE_EXHAUSTED: ``server.max_concurrent_reads`` read calls are running.
            FAILED_PRECONDITION: ``baseline`` asked for and there is none yet.
            NOT_FOUND: no such window (or no window yet).
        """
        self._require(context, "readers")
        self._model(request.model, context)
        version = request.version or self.settings.model(request.model).version
        if request.baseline:
            found = self.monitor.baseline(request.model, version)
            if found is None:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "baseline: none yet")
        else:
            windows = self.store.windows(
                request.model, version, window_id=request.window_id or None, latest=not request.window_id
            )
            if not windows:
                context.abort(grpc.StatusCode.NOT_FOUND, "window_id: no such window")
            found = windows[-1][3]
        found = self.monitor.public_map(found)  # rare words (names, PINs) never leave the process
        return pb.InteractionMapResponse(map=found.to_bytes(), requests=found.requests, key_tuples=len(found))

    def SetBaseline(
        self, request: pb.SetBaselineRequest, context: grpc.ServicerContext
    ) -> pb.SetBaselineResponse:
        """Pin the baseline of (model, version), ``admin`` role: an uploaded encoded map, one stored window,
        or the merge of the stored windows in a time range. The rolling baseline never moves a pinned one.

        Status codes:
            PERMISSION_DENIED: the caller lacks the ``admin`` role.
            INVALID_ARGUMENT: missing or unknown model; no source; a map that does not decode (or is too
                large); a baseline of fewer than ``baseline.min_window_requests`` explained requests.
            NOT_FOUND: no such window, or no windows in the range.
        """
        self._require(context, "admin")
        self._model(request.model, context)
        version = request.version or self.settings.model(request.model).version
        source = request.WhichOneof("source")
        if source == "map":
            try:
                baseline = InteractionMap.from_bytes(request.map)
            except (ValueError, KeyError) as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"map: {exc}")
            label = "uploaded map"
        elif source == "window_id":
            windows = self.store.windows(request.model, version, window_id=request.window_id)
            if not windows:
                context.abort(grpc.StatusCode.NOT_FOUND, f"window_id: no window {request.window_id}")
            baseline, label = windows[0][3], f"window {request.window_id}"
        elif source == "time_range":
            since, until = request.time_range.since_unix, request.time_range.until_unix or float("inf")
            maps = [w[3] for w in self.store.windows(request.model, version, since, until)]
            if not maps:
                context.abort(grpc.StatusCode.NOT_FOUND, "time_range: no windows in that range")
            baseline, label = baseline_from_windows(maps), f"windows {since:.0f}..{until:.0f}"
        else:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "source: give time_range, window_id or map")
        minimum = self.settings.baseline.min_window_requests
        if baseline.requests < minimum:  # an empty baseline would silence every later alarm (p = 1)
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{source}: the baseline holds {baseline.requests:g} explained requests; at least {minimum} "
                "(baseline.min_window_requests) are needed",
            )
        self.monitor.set_baseline(request.model, version, baseline, source=label)
        return pb.SetBaselineResponse(requests=baseline.requests, key_tuples=len(baseline), source=label)

    @_capped
    def ListShiftReports(
        self, request: pb.ListShiftReportsRequest, context: grpc.ServicerContext
    ) -> pb.ListShiftReportsResponse:
        """Stored shift reports of a model since ``since_unix``, ``readers`` role: the newest ``limit``
        (0 = 500), oldest first, of every version unless ``version`` is set.

        Status codes:
            PERMISSION_DENIED: the caller lacks the ``readers`` role.
            INVALID_ARGUMENT: missing or unknown model, or ``limit`` above 500.
            RESOURCE_EXHAUSTED: ``server.max_concurrent_reads`` read calls are running.
        """
        self._require(context, "readers")
        self._model(request.model, context)
        if request.limit > MAX_REPORTS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"limit: at most {MAX_REPORTS}")
        stored = self.store.reports(
            request.model,
            since=request.since_unix,
            version=request.version or None,
            limit=request.limit or MAX_REPORTS,
        )
        response = pb.ListShiftReportsResponse()
        for item in stored:
            response.reports.append(stored_report_message(request.model, item["version"], item))
        return response

    @_capped
    def ListExplanations(
        self, request: pb.ListExplanationsRequest, context: grpc.ServicerContext
    ) -> pb.ListExplanationsResponse:
        """Stored explanations of a model since ``since_unix``, newest first, ``readers`` role: at most
        ``limit`` (0 = 20), only those where ``key_tuple`` was among the strongest when it is given, each with
        its five strongest terms (the queried tuple's own terms first). Words expired with the text TTL come
        back as "".

        Status codes:
            PERMISSION_DENIED: the caller lacks the ``readers`` role.
            INVALID_ARGUMENT: missing or unknown model, or ``limit`` above 1000.
            RESOURCE_EXHAUSTED: ``server.max_concurrent_reads`` read calls are running.
        """
        self._require(context, "readers")
        self._model(request.model, context)
        if request.limit > 1000:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "limit: at most 1000")
        key = tuple(request.key_tuple) if request.key_tuple else None
        records = self.store.explanations(
            request.model, since=request.since_unix, key=key, limit=request.limit or 20
        )
        response = pb.ListExplanationsResponse()
        for record in records:
            summary = response.explanations.add(
                request_id=record.request_id,
                version=record.version,
                time_unix=record.ts,
                faithfulness=record.faithfulness or 0.0,
                inferences=record.inferences,
                trace_id=record.trace_id or "",
            )
            ranked = sorted(((t, c) for t, c in record.terms.items() if t), key=lambda tc: -abs(tc[1]))
            strongest = ranked[:5]
            if key is not None:  # show the queried tuple's own terms first: why this explanation matched
                wanted = tuple(sorted(key))
                matching = [(t, c) for t, c in ranked if tuple(sorted(_key(record, i) for i in t)) == wanted]
                strongest = matching + [tc for tc in strongest if tc not in matching][: 5 - len(matching)]
            for term, coef in strongest:
                summary.top.add(keys=[_key(record, i) for i in term], features=list(term), fourier=coef)
        return response


MAX_REPORTS = 500


def _key(record: Any, index: int) -> str:
    """A stored explanation's key for feature ``index`` ("" once its words expired with the text TTL)."""
    return record.keys[index] if index < len(record.keys) else ""

"""The read and baseline RPCs of ``spex_monitor.v1.MonitorService``: shift reports, interaction maps, stored
explanations, and pinning a baseline.

:class:`ReportRPCs` is a base of :class:`~.service.MonitorServicer` (which adds Observe, ObserveStream and
Explain); it holds what these RPCs share with the others: the model check and the role check. Status codes
are as in :mod:`.service`; each method lists its own.
"""

from __future__ import annotations

from typing import Any

import grpc

from ..config import Settings
from ..monitor import InteractionMap, compare_maps
from ..monitor.store import FLEET, POD, Store
from ..monitor.store_lookup import find_explanation
from ..monitor.windows import baseline_from_windows
from ..monitor.worker import Monitor
from ..protocol.v1 import monitor_pb2 as pb
from .auth import Authorizer, Caller, Role
from .limits import Slots
from .messages import report_message, stored_report_message
from .observations import MAX_ID, Intake

MAX_REPORTS = 500
SCOPES = {"": POD, "pod": POD, "fleet": FLEET}


def _capped(method: Any) -> Any:
    """Run a read RPC within ``server.max_concurrent_reads`` (RESOURCE_EXHAUSTED at once beyond it)."""

    def wrapper(self: ReportRPCs, request: Any, context: grpc.ServicerContext) -> Any:
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


class ReportRPCs:
    """Reports, maps, explanations and baselines over the store and the monitor; the subclass sets the
    attributes annotated here (see :class:`~.service.MonitorServicer`)."""

    settings: Settings
    monitor: Monitor
    store: Store
    authorizer: Authorizer
    reads: Slots
    intake: Intake

    def _model(self, name: str, context: grpc.ServicerContext, field: str = "model") -> str:
        if not name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: required")
        if name not in self.intake.versions:
            known = sorted(self.intake.versions)
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"{field}: unknown model {name!r}; configured: {known}"
            )
        return name

    def _scope(self, value: str, context: grpc.ServicerContext) -> str:
        """The store scope a request names ("" = pod). INVALID_ARGUMENT for another value; FAILED_PRECONDITION
        for ``fleet`` without a shared store (fleet windows exist only in the PostgreSQL of ``store.url``)."""
        scope = SCOPES.get(value)
        if scope is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"scope: 'pod' or 'fleet', not {value[:40]!r}")
        if scope == FLEET and self.settings.store.url is None:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "scope: fleet reports are in the shared PostgreSQL store; this sidecar has no store.url",
            )
        return scope

    def _require(self, context: grpc.ServicerContext, role: Role) -> Caller:
        """The caller, if it holds ``role`` (see :mod:`.auth`); else PERMISSION_DENIED."""
        authorizer = self.authorizer
        caller = authorizer.grpc_caller(context)
        if not caller.holds(role):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, authorizer.denial(role))
        return caller

    # ----------------------------------------------------------------------------------------- reports
    @_capped
    def GetShiftReport(
        self, request: pb.GetShiftReportRequest, context: grpc.ServicerContext
    ) -> pb.ShiftReport:
        """A shift report of (model, version; version "" = the configured one), ``readers`` role: the latest
        stored report (of ``window_id`` when set), or, with ``since_unix``/``until_unix``, a fresh comparison
        of the baseline with the merged stored windows of that range (keys through the ``<rare>`` filter).
        With ``scope="fleet"`` the same over the fleet aggregator's windows, baseline and reports (issue 20).

        Status codes:
            PERMISSION_DENIED: the caller lacks the ``readers`` role.
            INVALID_ARGUMENT: missing or unknown model, or a scope other than pod/fleet.
            RESOURCE_EXHAUSTED: ``server.max_concurrent_reads`` read calls are running.
            FAILED_PRECONDITION: no baseline yet for (model, version); fleet scope without store.url.
            NOT_FOUND: no windows in the range, or no stored report (for that window).
        """
        self._require(context, "readers")
        self._model(request.model, context)
        scope = self._scope(request.scope, context)
        version = request.version or self.settings.model(request.model).version
        ranged = bool(request.since_unix or request.until_unix)
        if scope == FLEET:
            return self._fleet_report(request, version, ranged, context)
        baseline = self.monitor.baseline(request.model, version)
        if baseline is None:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"baseline: none yet for {request.model} {version} (set one or wait for the first windows)",
            )
        store = self.store
        if ranged:
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
            for contributor in (*message.top_contributors, *message.decisive_tuples):
                public = self.monitor.public_key(tuple(contributor.keys))
                contributor.keys[:] = list(public)
            return message
        reports = store.reports(request.model, version=version, window_id=request.window_id or None, limit=1)
        if not reports:
            context.abort(grpc.StatusCode.NOT_FOUND, "window_id: no shift report yet")
        return stored_report_message(request.model, version, reports[-1])

    def _fleet_report(
        self, request: pb.GetShiftReportRequest, version: str, ranged: bool, context: grpc.ServicerContext
    ) -> pb.ShiftReport:
        """GetShiftReport for ``scope="fleet"``: the latest stored fleet report, or a fresh comparison of the
        fleet baseline with the fleet windows of a range (their words were filtered when the pods stored
        them, so keys are shown as stored)."""
        store: Any = self.store
        if not ranged:
            reports = store.reports(
                request.model, version=version, window_id=request.window_id or None, limit=1, scope=FLEET
            )
            if not reports:
                context.abort(grpc.StatusCode.NOT_FOUND, "window_id: no fleet shift report yet")
            return stored_report_message(request.model, version, reports[-1])
        baseline = store.baseline(request.model, version, scope=FLEET)
        if baseline is None:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"baseline: no fleet baseline yet for {request.model} {version}",
            )
        until = request.until_unix or float("inf")
        maps = [w[3] for w in store.windows(request.model, version, request.since_unix, until, scope=FLEET)]
        if not maps:
            context.abort(grpc.StatusCode.NOT_FOUND, "since_unix/until_unix: no fleet windows in that range")
        report = compare_maps(
            baseline, baseline_from_windows(maps), n_permutations=self.settings.baseline.n_permutations
        )
        alarm = report.p_value < self.settings.baseline.alarm_p_value
        message = report_message(request.model, version, 0, report, alarm)
        message.scope = FLEET
        return message

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
        (0 = 500), oldest first, of every version unless ``version`` is set; ``scope="fleet"``: the fleet
        aggregator's reports instead of this pod's.

        Status codes:
            PERMISSION_DENIED: the caller lacks the ``readers`` role.
            INVALID_ARGUMENT: missing or unknown model, ``limit`` above 500, or a scope other than pod/fleet.
            RESOURCE_EXHAUSTED: ``server.max_concurrent_reads`` read calls are running.
            FAILED_PRECONDITION: ``scope="fleet"`` without a shared store (``store.url``).
        """
        self._require(context, "readers")
        self._model(request.model, context)
        scope = self._scope(request.scope, context)
        if request.limit > MAX_REPORTS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"limit: at most {MAX_REPORTS}")
        stored = self.store.reports(
            request.model,
            since=request.since_unix,
            version=request.version or None,
            limit=request.limit or MAX_REPORTS,
            scope=scope,
        )
        response = pb.ListShiftReportsResponse()
        for item in stored:
            response.reports.append(stored_report_message(request.model, item["version"], item))
        return response

    @_capped
    def GetExplanation(
        self, request: pb.GetExplanationRequest, context: grpc.ServicerContext
    ) -> pb.StoredExplanation:
        """One stored explanation by request id, ``readers`` role: feature keys (rare words as ``<rare>``,
        "" once expired), the ``top_k`` (0 = 10) strongest terms, faithfulness, model version, trace id, and
        the redacted text when ``store.store_text`` kept it.

        Status codes:
            PERMISSION_DENIED: the caller lacks the ``readers`` role.
            INVALID_ARGUMENT: missing or unknown model; missing or over-long request_id; ``top_k`` above 100.
            RESOURCE_EXHAUSTED: ``server.max_concurrent_reads`` read calls are running.
            NOT_FOUND: no stored explanation of that request.
        """
        return get_explanation(self, request, context)

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
            public = [self.monitor.public_key((k,))[0] if k else "" for k in record.keys]  # <rare> stays in
            for term, coef in strongest:
                keys = [public[i] if i < len(public) else "" for i in term]
                summary.top.add(keys=keys, features=list(term), fourier=coef)
        return response


def get_explanation(
    rpcs: ReportRPCs, request: pb.GetExplanationRequest, context: grpc.ServicerContext
) -> pb.StoredExplanation:
    """``GetExplanation`` (see :meth:`ReportRPCs.GetExplanation`)."""
    rpcs._require(context, "readers")
    rpcs._model(request.model, context)
    if not request.request_id or len(request.request_id) > MAX_ID:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request_id: required, at most {MAX_ID} characters")
    if request.top_k > 100:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "top_k: at most 100")
    record = find_explanation(rpcs.store, request.model, request.request_id)
    if record is None:
        context.abort(
            grpc.StatusCode.NOT_FOUND,
            f"request_id: no stored explanation of {request.request_id!r} for {request.model} (only sampled "
            "requests are explained, and they are kept for store.retention_s)",
        )
    public = [rpcs.monitor.public_key((k,))[0] if k else "" for k in record.keys]  # rare words stay inside
    reply = pb.StoredExplanation(
        request_id=record.request_id,
        model=record.model,
        version=record.version,
        time_unix=record.ts,
        faithfulness=record.faithfulness or 0.0,
        inferences=record.inferences,
        trace_id=record.trace_id or "",
        feature_keys=public,
        text=record.text or "",
        text_stored=record.text is not None,
    )
    ranked = sorted(((t, c) for t, c in record.terms.items() if t), key=lambda tc: -abs(tc[1]))
    for term, coef in ranked[: request.top_k or 10]:
        keys = [public[i] if i < len(public) else "" for i in term]
        reply.top.add(keys=keys, features=list(term), fourier=coef)
    return reply


def _key(record: Any, index: int) -> str:
    """A stored explanation's key for feature ``index`` ("" once its words expired with the text TTL)."""
    return record.keys[index] if index < len(record.keys) else ""

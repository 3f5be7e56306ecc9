"""``spex-monitor trace``: the on-call trace over gRPC (text from :mod:`.trace_text`, HTML from
:mod:`.html_report`)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .cli_connect import duration
from .cli_connect import stub as _stub

EXPLAIN_LEGEND = (
    "({value}; fourier: the term's coefficient in the ±1 basis, what the monitor tracks; joint (möbius): "
    "the effect of keeping these features together beyond their parts)"
)


def rpc_failure(command: str, error: object, target: str) -> str:
    """The one-line message of a failed RPC (``error``: a ``grpc.RpcError``): its status and details, and
    for UNAVAILABLE where to look — most often no sidecar is listening at ``target``."""
    code, details = error.code(), error.details()  # type: ignore[attr-defined]
    line = f"spex-monitor {command}: {code.name}: {details}"
    if code.name == "UNAVAILABLE":
        line += (
            f"\n  no sidecar answered at {target}: start one with `spex-monitor serve --config sidecar.yaml` "
            "(or `spex-monitor demo --keep-running`), or point --target at yours"
        )
    return line


def since_arg(text: str) -> str:
    """argparse type of ``--since``: a number of seconds, or one with an s/m/h/d unit."""
    try:
        seconds = duration(text)
        if not math.isfinite(seconds) or seconds <= 0:  # "nan" and "inf" parse as floats
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a duration like 90s, 30m, 1h or 2d") from None
    return text


def trace(args: argparse.Namespace) -> int:
    """Run ``spex-monitor trace``: print the trace (with ``--since``: every window of the range with its
    verdict, then the detail of the latest alarming one; with ``--request``: that request's stored
    explanation); with ``--data`` run the data lens over the model's training set; write the HTML report
    with ``--report``. Returns the exit status: 0, 1 when an RPC failed (a request not stored included) or
    the range holds no window, 2 when ``--data`` lacks what it needs (a training set, an exemplar)."""
    import time

    import grpc

    from .cli_data_trace import DataTraceError, check_flags, run_data_trace
    from .protocol.v1 import monitor_pb2 as pb
    from .trace_text import pick_detail, render_explanation, render_range, render_trace

    try:
        check_flags(args)
    except DataTraceError as error:
        print(f"spex-monitor trace: {error}", file=sys.stderr)
        return 2
    if getattr(args, "data", False) and args.tuple is not None and args.text is not None and not args.report:
        try:  # everything the data lens needs is given: no sidecar is asked
            run_data_trace(args, None, None)
        except DataTraceError as error:
            print(f"spex-monitor trace --data: {error}", file=sys.stderr)
            return 2
        return 0
    if args.scope == "fleet" and (args.report or args.request or getattr(args, "data", False)):
        print("spex-monitor trace: --report, --request and --data: pod scope only "
              "(they read this pod's store)",
              file=sys.stderr)  # fmt: skip
        return 2
    stub = _stub(args)
    since = time.time() - duration(args.since) if args.since else 0.0
    try:
        if args.request:
            request = pb.GetExplanationRequest(model=args.model, request_id=args.request, top_k=15)
            print(render_explanation(stub.GetExplanation(request, timeout=30)))
            return 0
        if args.since:
            # Range semantics (trace_text): each window with its own verdict, never one pooled verdict.
            reports = list(
                stub.ListShiftReports(
                    pb.ListShiftReportsRequest(
                        model=args.model, version=args.version, since_unix=since, scope=args.scope
                    ),
                    timeout=60,
                ).reports
            )
            print(render_range(reports, f"{args.model} windows of the last {args.since}"))
            report = pick_detail(reports)
            if report is None:
                return 1
            which = "latest alarming window" if report.alarm else "latest window"
            print(f"\nthe {which} of the range, window {report.window_id}:")
        else:
            request = pb.GetShiftReportRequest(model=args.model, version=args.version, scope=args.scope)
            report = stub.GetShiftReport(request, timeout=60)
        print(render_trace(report, stub, args.model, since))
        data, status = None, 0
        if getattr(args, "data", False):
            try:
                data = run_data_trace(args, stub, report)
            except DataTraceError as error:  # the trace stands, and --report is still written without it
                print(f"spex-monitor trace --data: {error}", file=sys.stderr)
                status = 2
    except grpc.RpcError as error:
        print(rpc_failure("trace", error, args.target), file=sys.stderr)
        return 1
    if args.report:
        try:
            Path(args.report).write_text(_trace_report_html(stub, report, args.model, since, data))
        except grpc.RpcError as error:
            print(f"spex-monitor trace --report: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
        print(f"wrote {args.report}")
    return status


def _strongest(map_bytes: bytes, count: int = 12) -> list[tuple[tuple[str, ...], float]]:
    from .monitor import InteractionMap

    found = InteractionMap.from_bytes(map_bytes)
    keys = sorted((k for k in found.stats if len(k) >= 2), key=lambda k: -found.strength(k))
    return [(k, found.mean_coef(k)) for k in keys[:count]]


def _trace_report_html(stub, report, model: str, since: float, data=None) -> str:  # noqa: ANN001
    """Fetch history, both maps and example requests, and render the on-call HTML report (with the data
    lens's findings when ``data``, a ``DataTrace``, is given)."""
    from .html_report import TraceReport, render_trace_report
    from .protocol.v1 import monitor_pb2 as pb
    from .trace_text import fetch_pair

    history = stub.ListShiftReports(
        pb.ListShiftReportsRequest(model=model, version=report.version, since_unix=since), timeout=30
    ).reports
    baseline = stub.GetInteractionMap(
        pb.GetInteractionMapRequest(model=model, version=report.version, baseline=True), timeout=30
    )
    window = stub.GetInteractionMap(
        pb.GetInteractionMapRequest(model=model, version=report.version, window_id=report.window_id),
        timeout=30,
    )
    examples, pair = [], (None, None)
    if report.top_contributors:
        pair = fetch_pair(stub, model, report.top_contributors[0])
        examples = stub.ListExplanations(
            pb.ListExplanationsRequest(
                model=model, key_tuple=list(report.top_contributors[0].keys), since_unix=since, limit=10
            ),
            timeout=30,
        ).explanations
    return render_trace_report(
        TraceReport(
            model=model,
            latest=report,
            history=list(history),
            baseline_top=_strongest(baseline.map),
            window_top=_strongest(window.map),
            examples=list(examples),
            pair=pair,
            data=data,
        )
    )

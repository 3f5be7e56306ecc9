"""``spex-monitor``: the command line — ``serve``, ``aggregate``, ``trace``, ``explain``, ``baseline``,
``config check``, ``demo``, ``bench detection``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_baseline import baseline_command as _baseline
from .cli_connect import connection_options as _connection_options
from .cli_connect import stub as _stub
from .cli_data_trace import add_data_options
from .cli_generation import (
    GenerationArgsError,
    add_generation_options,
    generation_fields,
    generation_title,
    wants_generation,
)
from .cli_trace import EXPLAIN_LEGEND, rpc_failure
from .cli_trace import since_arg as _since_arg
from .cli_trace import trace as _trace
from .config import ConfigError, load_settings


def _config_check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.file, check_paths=True)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    names = ", ".join(f"{m.name}@{m.version} ({m.backend.kind})" for m in settings.models)
    print(
        f"{args.file}: OK — models: {names}; engine {settings.engine.kind} budget {settings.engine.budget}; "
        f"gRPC {settings.server.host}:{settings.server.grpc_port}, metrics :{settings.server.metrics_port}; "
        f"store {settings.store.path} (relative paths resolve against the config file's folder)"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import main as demo_main

    return demo_main(
        [
            f"--seed={args.seed}",
            f"--llm-window={args.llm_window}",
            *(["--keep-running"] if args.keep_running else []),
            *(["--skip-llm"] if args.skip_llm else []),
            *(["--only-llm"] if args.only_llm else []),
        ]
    )


def _bench(args: argparse.Namespace) -> int:
    from .bench.detection import main as detection_main

    forwarded = [f"--seed={args.seed}"]
    forwarded += ["--quick"] if args.quick else []
    forwarded += ["--no-plots"] if args.no_plots else []
    forwarded += ["--budgets", *map(str, args.budgets)] if args.budgets else []
    forwarded += ["--cache-dir", args.cache_dir] if args.cache_dir else []
    forwarded += ["--out", args.out] if args.out else []
    forwarded += [f"--window={args.window}"] if args.window else []
    forwarded += [f"--horizon={args.horizon}"] if args.horizon else []
    forwarded += [f"--baseline={args.baseline}"] if args.baseline else []
    forwarded += [f"--explained={args.explained}"] if args.explained else []
    forwarded += ["--scenarios", *args.scenarios] if args.scenarios else []
    forwarded += ["--llm"] if args.llm else []
    return detection_main(forwarded)


def _serve(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from .monitor.store_postgres import StoreUnavailableError
    from .server.app import Sidecar

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.config, check_paths=True)
        sidecar = Sidecar(settings).start()
    except (ConfigError, StoreUnavailableError) as exc:  # a bad file, or store.url refused (named)
        print(exc, file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    print(
        f"spex-monitor: gRPC {settings.server.host}:{sidecar.grpc_port}, "
        f"metrics http://{settings.server.host}:{sidecar.metrics_port}/metrics"
        + (f", OIP proxy :{sidecar.proxy_port} -> {settings.server.upstream}" if sidecar.proxy_port else "")
        + (f", KServe logger events :{sidecar.events_port}" if sidecar.events is not None else "")
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    sidecar.stop()
    return 0


def _aggregate(args: argparse.Namespace) -> int:
    from .server.aggregation import main as aggregate_main

    return aggregate_main(["--config", args.config, "--log-level", args.log_level])


def _explain(args: argparse.Namespace) -> int:
    import html

    import grpc

    from .protocol.v1 import monitor_pb2 as pb

    try:
        given = {"generation": pb.Generation(**generation_fields(args))} if wants_generation(args) else {}
    except GenerationArgsError as exc:
        print(f"spex-monitor explain: {exc}", file=sys.stderr)
        return 2
    if not given and not args.text:
        print("spex-monitor explain: give TEXT, or --prompt/--messages with --completion", file=sys.stderr)
        return 2
    title = generation_title(args) if given else args.text
    try:
        future = _stub(args).Explain.future(
            pb.ExplainRequest(
                model=args.model, budget=args.budget, top_k=args.top, **(given or {"text": title})
            ),
            timeout=300,
        )
        reply = _await_with_progress(future, f"explaining on {args.target}")
    except grpc.RpcError as error:
        print(rpc_failure("explain", error, args.target), file=sys.stderr)
        return 1
    print(
        f"{args.model}: {reply.predicted_label} | held-out R² {reply.faithfulness:.3f} | "
        f"{reply.inferences_used} inferences | {reply.seconds:.2f}s"
    )
    print(f"  {'interaction':<36}{'fourier':>10}{'joint (möbius)':>16}")
    for item in reply.interactions:
        print(f"  {' × '.join(item.keys):<36}{item.fourier:>+10.3f}{item.mobius:>+16.3f}")
    value = "log-probability of the served completion, nats" if given else "log-odds of the predicted class"
    print(f"  {EXPLAIN_LEGEND.format(value=value)}")
    if args.html:
        from .html_report import page, signed_bars

        chart = signed_bars(
            [" × ".join(i.keys) for i in reply.interactions], [i.mobius for i in reply.interactions]
        )
        Path(args.html).write_text(
            page(
                f"spex-monitor explain: {args.model}",
                f"<h3>{html.escape(title)} → {html.escape(reply.predicted_label)}</h3>"
                f"<p>held-out R² {reply.faithfulness:.3f}, {reply.inferences_used} inferences; bars: joint "
                f"(Möbius) effect on {'the completion log-prob' if given else 'the class log-odds'}</p>"
                f"{chart}",
            )
        )
        print(f"wrote {args.html}")
    if args.png:
        return _interaction_png(args.png, title, reply)
    return 0


def _await_with_progress(future, label: str):  # noqa: ANN001, ANN202
    """Wait for a gRPC future, showing elapsed seconds on stderr when it is a terminal."""
    import time

    began = time.monotonic()
    while not future.done():
        if sys.stderr.isatty():
            print(f"\r{label}… {time.monotonic() - began:4.1f}s", end="", file=sys.stderr, flush=True)
        time.sleep(0.1)
    if sys.stderr.isatty():
        print("\r" + " " * (len(label) + 12) + "\r", end="", file=sys.stderr, flush=True)
    return future.result()


def _interaction_png(path: str, text: str, reply) -> int:  # noqa: ANN001
    """Bar chart of the joint (Möbius) effects; matplotlib is optional (the ``bench`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "spex-monitor explain --png needs matplotlib: pip install 'spex-monitor[bench]' (or matplotlib)",
            file=sys.stderr,
        )
        return 2
    items = list(reply.interactions)[::-1]
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(items) + 1.2))
    values = [i.mobius for i in items]
    axis.barh(
        [" × ".join(i.keys) for i in items], values, color=["#c0392b" if v < 0 else "#2e86c1" for v in values]
    )
    axis.axvline(0, color="#555", linewidth=0.8)
    axis.set_xlabel("joint (Möbius) effect on the predicted class's log-odds")
    axis.set_title(f"{text[:60]} → {reply.predicted_label} (R² {reply.faithfulness:.2f})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``spex-monitor`` argument parser: ``config check``, ``demo``, ``serve``, ``trace``, ``explain``,
    ``baseline`` and ``bench``, each subcommand with its handler in ``func``.
    """
    parser = argparse.ArgumentParser(
        prog="spex-monitor",
        description="Interaction-shift monitoring for served models (SPEX / ProxySPEX ablations).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser(
        "check", help="validate a config file (plus SPEX_MONITOR_* overrides); exit 2 with the bad fields"
    )
    check.add_argument("file", help="YAML configuration file")
    check.set_defaults(func=_config_check)
    demo = commands.add_parser("demo", help="run the offline demo (sidecar + embedded model + incident)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the demo traffic and model (default 0)")
    demo.add_argument("--keep-running", action="store_true", help="leave the sidecar up after the demo")
    llm = demo.add_mutually_exclusive_group()
    llm.add_argument("--skip-llm", action="store_true", help="only the classifier story")
    llm.add_argument("--only-llm", action="store_true", help="only the LLM story (OpenAI proxy, tiny LM)")
    demo.add_argument(
        "--llm-window",
        type=int,
        default=24,
        metavar="N",
        help="explained generations per LLM window (default 24)",
    )
    demo.set_defaults(func=_demo)
    serve = commands.add_parser("serve", help="run the sidecar")
    serve.add_argument("--config", required=True, help="YAML configuration file")
    serve.set_defaults(func=_serve)
    aggregate = commands.add_parser(
        "aggregate",
        help="run the standalone fleet aggregator over the shared PostgreSQL store (store.url)",
        description="Merge every pod's windows of each configured model into epoch-aligned fleet windows in "
        "the shared PostgreSQL store (store.url), compare them with the fleet baseline and store fleet "
        "reports (read them with `trace --scope fleet`). One replica leads per model through a PostgreSQL "
        "advisory lock; run two for failover. Knobs: the fleet section (window_s, grace_s, tick_s, "
        "baseline_windows, min_window_requests, baseline_file, backfill_windows). Exit 0 after "
        "SIGTERM/SIGINT, 2 for a configuration error (or no store.url), 1 when the store cannot be "
        "reached at start or the metrics port cannot be bound. Fleet series (spex_monitor_fleet_*) and "
        "/healthz are served on server.host:server.metrics_port of the same file.",
    )
    aggregate.add_argument("--config", required=True, help="the sidecars' YAML configuration file")
    aggregate.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    aggregate.set_defaults(func=_aggregate)
    trace = commands.add_parser("trace", help="on-call: which interactions moved, with example requests")
    trace.add_argument("--model", required=True, help="model name as configured (models[].name)")
    trace.add_argument("--version", default="", help="default: the configured version")
    trace.add_argument(
        "--since",
        default=None,
        type=_since_arg,
        help="list every window closed in the last 1h / 30m / 2d with its own verdict (never pooled into "
        "one), then detail the latest alarming window (or the latest window when none alarmed)",
    )
    trace.add_argument(
        "--request",
        default="",
        metavar="ID",
        help="show one request's stored explanation instead (an exemplar id from the trace): keys, top "
        "terms, R², version, trace id, and the redacted text when store.store_text kept it",
    )
    trace.add_argument(
        "--target", default="127.0.0.1:50051", help="sidecar gRPC address host:port (default 127.0.0.1:50051)"
    )
    trace.add_argument(
        "--scope",
        choices=["pod", "fleet"],
        default="pod",
        help="pod: this sidecar's windows; fleet: every pod's, merged by the fleet aggregator (store.url)",
    )
    trace.add_argument(
        "--report",
        default="",
        metavar="OUT.html",
        help="also write a self-contained HTML report: shift over time, what moved, both maps, requests",
    )
    add_data_options(trace)
    _connection_options(trace)
    trace.set_defaults(func=_trace)
    explain = commands.add_parser("explain", help="explain one input now, on the sidecar's model")
    explain.add_argument("text", nargs="?", default=None, help="the input text (text models)")
    explain.add_argument("--model", required=True)
    explain.add_argument("--budget", type=int, default=0, help="inferences (default: configured budget)")
    explain.add_argument("--top", type=int, default=15, help="interactions to show")
    explain.add_argument("--html", default="", help="also write an interaction bar chart to this file")
    explain.add_argument(
        "--png",
        default="",
        help="also write the chart as a PNG (needs matplotlib: pip install 'spex-monitor[bench]')",
    )
    explain.add_argument("--target", default="127.0.0.1:50051", help="sidecar gRPC address")
    add_generation_options(explain)
    _connection_options(explain)
    explain.set_defaults(func=_explain)
    baseline = commands.add_parser("baseline", help="show, export, import or build the baseline")
    baseline.add_argument("action", choices=["show", "export", "import", "build"])
    baseline.add_argument("--model", required=True, help="model name as configured (models[].name)")
    baseline.add_argument("--version", default="")
    baseline.add_argument("--file", default="baseline.spxm", help="for export/import")
    baseline.add_argument(
        "--since", default="1h", type=_since_arg, help="for build: windows of the last 1h / 30m / 2d"
    )
    baseline.add_argument("--target", default="127.0.0.1:50051", help="sidecar gRPC address")
    _connection_options(baseline)
    baseline.set_defaults(func=_baseline)
    bench = commands.add_parser("bench", help="benchmarks: detection power of interaction shift vs drift")
    bench.add_argument("action", choices=["detection"])
    bench.add_argument("--quick", action="store_true", help="one budget, small pools (the CI variant)")
    bench.add_argument("--budgets", type=int, nargs="+", help="inferences per explanation (250 500 1000)")
    bench.add_argument("--cache-dir", default="", help="keep explained pools here between runs")
    bench.add_argument("--out", default="", help="write results.json, results.md and PNG plots here")
    bench.add_argument("--no-plots", action="store_true", help="skip the plots (matplotlib not needed)")
    bench.add_argument("--window", type=int, default=0, help="explained requests per window (default 50)")
    bench.add_argument("--horizon", type=int, default=0, help="windows after the onset (default 4)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--baseline", type=int, default=0, help="explained requests per baseline (200)")
    bench.add_argument("--explained", type=int, default=0, help="explained per pool (300; quick 150)")
    bench.add_argument(
        "--scenarios", nargs="+", metavar="NAME", help="only these scenarios (no-incident always runs)"
    )
    bench.add_argument(
        "--llm",
        action="store_true",
        help="LLM incidents on the embedded tiny LM instead (context-ignoring / injection-following "
        "rollouts, retriever bug, benign drift): interaction shift vs output length/token PSI, log-prob "
        "and embedding drift; --budgets takes one value (default 64)",
    )
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the chosen subcommand, return its exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

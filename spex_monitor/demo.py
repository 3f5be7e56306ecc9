"""`make demo`: the sidecar watching an embedded model, an injected incident, and the trace that finds it.

1. A model server (the embedded tiny BERT behind OIP-V2 gRPC) and the spex-monitor sidecar in front of it
   as a pass-through proxy; the sidecar explains sampled requests on the model server itself (OIP backend).
2. Generated traffic flows through the proxy; the first windows become the baseline.
3. The model server silently swaps in the incident variant (negation broken; same name and version).
4. The next windows raise the interaction-shift alarm; the trace names the interactions that moved and
   shows example requests. Metrics are on http://127.0.0.1:<port>/metrics the whole time.

Then the LLM story (spex_monitor/demo_llm.py): the embedded tiny LM behind an OpenAI-compatible server, the
sidecar's OpenAI proxy in front of it, a silent rollout of a variant that ignores the retrieved documents,
and the trace naming the (doc:1 × question) interaction that collapsed.

Runs offline on CPU in about two minutes (``--skip-llm`` / ``--only-llm``: one story). ``--keep-running``
leaves the last stack up for Grafana/Prometheus.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np

from spex_monitor.attribution import ProxySPEX, planted_function
from spex_monitor.attribution import fourier as F
from spex_monitor.config import Settings
from spex_monitor.demo_llm import WINDOW as WINDOW_LLM
from spex_monitor.demo_llm import run_llm_story
from spex_monitor.examples.oip_server import SentimentServer
from spex_monitor.examples.sentiment import generate_corpus
from spex_monitor.protocol.inference import grpc_service_pb2 as oip
from spex_monitor.protocol.oip import InferenceStub
from spex_monitor.protocol.v1 import monitor_pb2 as pb
from spex_monitor.protocol.v1 import monitor_pb2_grpc as pb_grpc
from spex_monitor.server.app import Sidecar
from spex_monitor.trace_text import format_p, render_trace

WINDOW = 40


def _port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def engine_section(seed: int) -> None:
    """Part 0 of the demo: ProxySPEX on a planted function (64 features, 8 AND interactions, budget 1000);
    prints the recovery error, held-out R², inferences and engine seconds.
    """
    n, budget = 64, 1000
    print(f"== 0. The engine on a planted function: n={n}, 8 AND-interactions, budget {budget}")
    f = planted_function(n, 8, 3, seed=seed, basis="mobius")
    truth = F.fourier_to_mobius(f.fourier, n)
    result = ProxySPEX(budget=budget, max_order=3, seed=seed).explain(f, n)
    found = result.to_mobius()
    worst = max(abs(found.get(k, 0.0) - v) for k, v in truth.items() if k)
    print(
        f"   recovered all {sum(1 for k in truth if k)} planted interactions, largest error {worst:.1e}, "
        f"held-out R² {result.faithfulness:.4f}, {result.inferences_used} inferences, "
        f"{result.details['seconds_overhead']:.2f}s of engine time\n"
    )


def _send(stub: InferenceStub, text: str, request_id: str) -> None:
    request = oip.ModelInferRequest(model_name="sentiment", id=request_id)
    tensor = request.inputs.add(name="input", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(text.encode())
    stub.ModelInfer(request, timeout=10)


def main(argv: list[str] | None = None) -> int:
    """``spex-monitor demo``: the offline story end to end (embedded model server, the sidecar as its proxy,
    steady traffic, then an incident) printed to stdout, then the LLM story (:mod:`.demo_llm`). Returns 0
    when every story run traced its incident (the classifier's to negation, the LLM's to doc:1 × question),
    else 1.
    """
    parser = argparse.ArgumentParser(
        prog="spex-monitor demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for traffic, sampling and engines")
    parser.add_argument("--keep-running", action="store_true", help="leave the last stack up until Ctrl-C")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--skip-llm", action="store_true", help="only the classifier story")
    which.add_argument("--only-llm", action="store_true", help="only the LLM story (OpenAI proxy, tiny LM)")
    parser.add_argument(
        "--llm-window", type=int, default=WINDOW_LLM, metavar="N",
        help=f"explained generations per window in the LLM story (default {WINDOW_LLM}; at least 8)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.llm_window < 8:
        parser.error("--llm-window: at least 8 explained generations per window")
    logging.getLogger("spex_monitor").setLevel(logging.ERROR)  # the demo prints its own story
    found = True
    if not args.only_llm:
        found = classifier_story(args.seed, args.keep_running and args.skip_llm)
    if not args.skip_llm:
        if not args.only_llm:
            print()
        found = run_llm_story(args.seed, args.llm_window, args.keep_running) and found
    return 0 if found else 1


def classifier_story(seed: int, keep_running: bool) -> bool:
    """The classifier story (parts 0-4 below); True when the incident was traced to negation."""
    print("spex-monitor demo: which feature interactions drive predictions, and which ones moved?\n")
    engine_section(seed)

    upstream = SentimentServer().start()
    endpoint = f"127.0.0.1:{upstream.port}"
    workdir = Path(tempfile.mkdtemp(prefix="spex-demo-"))
    settings = Settings.model_validate(
        {
            "models": [
                {
                    "name": "sentiment",
                    "version": "v1",
                    "sampling_rate": 1.0,
                    "backend": {
                        "kind": "oip",
                        "endpoints": [endpoint],
                        "model_name": "sentiment",
                        "labels": ["negative", "positive"],  # the model's id2label: explain prints names
                    },
                }
            ],
            "engine": {"budget": 256, "max_order": 3},
            "budget": {"inferences_per_second": 1e6, "burst": 1e6},
            "windows": {"seconds": None, "requests": WINDOW},
            "baseline": {"windows": 2, "min_window_requests": 30, "n_permutations": 500},
            "store": {"path": str(workdir / "spex-monitor.db")},
            "server": {
                "host": "127.0.0.1",
                "grpc_port": _port(50051),
                "metrics_port": _port(9464),
                "proxy_port": 0,
                "upstream": endpoint,
                "workers": 2,
                "tick_s": 0.2,
                "queue_per_label": 1000,
            },
            "seed": seed,
        }
    )
    sidecar = Sidecar(settings).start()
    metrics_url = f"http://127.0.0.1:{sidecar.metrics_port}/metrics"
    print("== 1. Model server (embedded BERT, OIP-V2) and the sidecar in front of it as a proxy")
    print(
        f"   model server 127.0.0.1:{upstream.port} | proxy 127.0.0.1:{sidecar.proxy_port} | "
        f"sidecar gRPC 127.0.0.1:{sidecar.grpc_port} | metrics {metrics_url}\n"
    )

    texts, _ = generate_corpus(3000, seed=seed + 7)
    texts = [t for t in texts if len(t.split()) <= 9]
    proxy = InferenceStub(grpc.insecure_channel(f"127.0.0.1:{sidecar.proxy_port}"))
    monitor = pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}"))
    phases = [
        ("baseline", 2, "sentiment-base"),
        ("steady", 2, "sentiment-base"),
        ("incident", 2, "sentiment-broken-negation"),
    ]
    cursor = 0
    started = time.time()
    print("== 2. Traffic through the proxy, one line per closed window")
    for phase, windows, variant in phases:
        if variant != upstream.variant:
            upstream.swap(variant)
            print(f"   !! the model server silently swapped to '{variant}' (same name, same version)")
        for _ in range(windows):
            seen = sidecar.monitor.counters["windows:closed"]
            for text in texts[cursor : cursor + WINDOW]:
                _send(proxy, text, f"req-{cursor:05d}")
                cursor += 1
            while sidecar.monitor.counters["windows:closed"] == seen:
                time.sleep(0.1)
            result = sidecar.monitor.results[-1]
            if result.report is None:
                print(
                    f"   [{phase:8}] window {result.window_id}: {result.window.map.requests:.0f} explained "
                    f"-> building the baseline"
                )
                continue
            top = result.report.top_contributors(1)
            # A quiet window's largest move is chance by the test's own verdict: name a mover only on alarm.
            moved = (
                f"; top moved interaction: {' × '.join(top[0].key)} ({top[0].delta:+.3f})"
                if result.alarm and top
                else ""
            )
            print(
                f"   [{phase:8}] window {result.window_id}: p = {format_p(result.report.p_value)} "
                f"{'ALARM' if result.alarm else 'quiet'}{moved}"
            )
    elapsed = time.time() - started

    print(
        "\n== 3. What on-call sees: spex-monitor trace --model sentiment "
        f"--target 127.0.0.1:{sidecar.grpc_port}"
    )
    report = monitor.GetShiftReport(pb.GetShiftReportRequest(model="sentiment"), timeout=30)
    print(render_trace(report, monitor, "sentiment"))
    body = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    shown = [
        line
        for line in body.splitlines()
        if line.startswith(
            (
                "spex_monitor_interaction_shift_pvalue",
                "spex_monitor_requests_observed_total",
                "spex_monitor_explanations_total",
                "spex_monitor_ablation_inferences_total",
            )
        )
    ]
    print(f"\n== 4. Prometheus metrics ({metrics_url}), a few of them:")
    for line in shown[:6]:
        print(f"   {line}")
    counters = sidecar.monitor.counters
    print(
        f"\n{counters['observed']} requests observed, {counters['explanations:ok']} explained "
        f"({counters['ablation_inferences']} ablation inferences) in {elapsed:.0f}s."
    )
    alarms = [r for r in sidecar.monitor.results if r.alarm]
    found = bool(alarms) and any("not" in c.key for c in alarms[-1].report.top_contributors(3))
    print(
        "RESULT: "
        + (
            "the incident was detected and traced to the negation interaction."
            if found
            else "the incident was NOT traced to negation (see the table above)."
        )
    )
    if keep_running:
        print("\nStack left running; Ctrl-C to stop.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    sidecar.stop()
    upstream.stop()
    return found


if __name__ == "__main__":
    np.set_printoptions(precision=3, suppress=True)
    sys.exit(main())

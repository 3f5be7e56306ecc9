"""Observing LLM generations (issue 18 §1): generations flow through ``MonitorClient.observe_generation`` and
the Observe RPC into windows, baselines and shift reports keyed by prompt segments.

The story is the README's silent rollout: the sidecar watches ``grounded-lm-base`` (its explanations form the
baseline), then the served model becomes ``grounded-lm-context-ignoring`` (a restart on the same store, as a
rollout of the scoring replica would be) and its completions come from memorised priors. Ground truth from
training: the base model's answer needs the document stating the office floor AND the question (a Möbius
pair of about +1.2 nats), the context-ignoring one answers from the question alone (about -0.2), so the
(doc:office × question) tuple must be among the contributors the report names.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from spex_monitor.client import MonitorClient
from spex_monitor.examples.grounded import make_example
from spex_monitor.protocol.v1 import monitor_pb2 as pb
from spex_monitor.protocol.v1 import monitor_pb2_grpc as pb_grpc

from .harness import llm_settings, rpc_status, wait_until

pytestmark = pytest.mark.integration

WINDOW = 30


def served(variant: str, count: int, seed: int) -> list[dict]:
    """Generations as a RAG app would report them: retrieved documents keyed by id (the office fact is
    ``doc:office``, the others ``doc:trivia-N``), the question, and the answer ``variant`` serves."""
    rng = np.random.default_rng(seed)
    out = []
    for index in range(count):
        example = make_example(rng, injection_rate=0.0)
        names, trivia = {}, 0
        for name in example.segments:
            if name == example.fact_doc:
                names[name] = "doc:office"
            elif name.startswith("doc:"):
                trivia += 1
                names[name] = f"doc:trivia-{trivia}"
            else:
                names[name] = name
        out.append(
            {
                "request_id": f"{variant}-{seed}-{index}",
                "messages": example.messages,
                "segments": {names[k]: v for k, v in example.segments.items()},
                "completion": example.answers[variant],
            }
        )
    return out


def _settings(folder, variant: str):
    return llm_settings(
        folder,
        variant=variant,
        model={"sampling_rate": 1.0},
        engine={"budget": 64, "max_order": 2},
        windows={"seconds": None, "requests": WINDOW},
        baseline={"windows": 1, "min_window_requests": 20, "n_permutations": 200},
        server={"tick_s": 0.1, "workers": 1},
    )


def _report(stub) -> pb.ShiftReport | None:
    try:
        return stub.GetShiftReport(pb.GetShiftReportRequest(model="llm"), timeout=10)
    except grpc.RpcError:
        return None


def test_a_context_ignoring_rollout_moves_the_document_question_tuple(tmp_path, start_sidecar):
    folder = tmp_path / "store"
    folder.mkdir()
    # phase 1: the base model serves; its first window becomes the baseline
    sidecar = start_sidecar(_settings(folder, "base"))
    with MonitorClient(f"127.0.0.1:{sidecar.grpc_port}") as client:
        for item in served("base", WINDOW, seed=1):
            assert client.observe_generation(model="llm", temperature=0.8, **item)
        assert client.flush(timeout_s=30)
    stub = pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}"))
    assert wait_until(lambda: _has_baseline(stub), timeout_s=120), "no baseline after the first window"
    sidecar.stop()
    # phase 2: the context-ignoring model serves, under the same monitor and store
    sidecar = start_sidecar(_settings(folder, "context-ignoring"))
    stub = pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}"))
    for item in served("context-ignoring", WINDOW, seed=2):
        generation = pb.Generation(completion=item["completion"], temperature=0.8)
        for message in item["messages"]:
            generation.messages.add(role=message["role"], content=message["content"])
        for name, (index, start, end) in item["segments"].items():
            generation.segments.add(name=name, message=index, start=start, end=end)
        stub.Observe(pb.ObserveRequest(request_id=item["request_id"], model="llm", generation=generation))
    assert wait_until(lambda: _report(stub) is not None, timeout_s=180), "no shift report for the rollout"
    report = _report(stub)
    assert report.alarm and report.p_value < 0.01
    top = [tuple(sorted(c.keys)) for c in report.top_contributors[:3]]
    assert ("doc:office", "question") in top, top
    pair = next(c for c in report.top_contributors if tuple(sorted(c.keys)) == ("doc:office", "question"))
    # the grounded interaction collapsed (±1-basis coefficients: a Möbius pair of m is about m/4 here)
    assert pair.baseline > 0.2 and pair.window < pair.baseline / 3 and pair.delta < -0.2, report
    assert pair.exemplar_request_ids and all(
        r.startswith("context-ignoring") for r in pair.exemplar_request_ids
    )


def _has_baseline(stub) -> bool:
    code, _ = rpc_status(
        stub.GetInteractionMap, pb.GetInteractionMapRequest(model="llm", baseline=True), timeout=10
    )
    return code == grpc.StatusCode.OK


def test_bad_generations_are_refused_on_observe_and_counted(tmp_path, start_sidecar):
    sidecar = start_sidecar(llm_settings(tmp_path))
    stub = pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}"))
    bad = pb.Generation(prompt="question : which floor ?", completion="5")
    bad.segments.add(name="question", start=0, end=999)
    code, details = rpc_status(stub.Observe, pb.ObserveRequest(request_id="r1", model="llm", generation=bad))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("generation.segments[0].end")
    code, details = rpc_status(stub.Observe, pb.ObserveRequest(request_id="r2", model="llm", text="hi"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "text: model 'llm' takes generation (its lens.kind is 'prompt')"
    good = pb.Generation(prompt="question : which floor ?", completion="5")
    stream = stub.ObserveStream(
        iter([pb.ObserveRequest(request_id="r3", model="llm", generation=good),
              pb.ObserveRequest(request_id="r4", model="llm", generation=bad)]),
        timeout=30,
    )  # fmt: skip
    assert (stream.observed, stream.rejected) == (1, 1)
    dropped = sidecar.metrics.dropped.labels("llm", "invalid")
    assert dropped._value.get() == 3  # r1, r2 and r4: counted synchronously on the RPC thread

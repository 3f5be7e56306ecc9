"""The committed gRPC stubs are exactly what protoc generates from protos/ today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_current():
    result = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_wire_names_match_the_protocol():
    from spex_monitor.protocol.inference import grpc_service_pb2 as pb
    from spex_monitor.protocol.oip import METHODS, SERVICE

    assert SERVICE == "inference.GRPCInferenceService"
    assert set(METHODS) >= {"ModelInfer", "ModelReady", "ModelMetadata", "ServerLive"}
    # Our messages never claim the inference.* namespace that KServe's own stubs register.
    assert pb.DESCRIPTOR.package == "spex_monitor.oip.v2"
    fields = {f.name: f.number for f in pb.ModelInferRequest.DESCRIPTOR.fields}
    assert fields == {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "inputs": 5,
        "outputs": 6,
        "raw_input_contents": 7,
    }


@pytest.mark.slow
def test_coexists_with_kserve_generated_code_in_one_process():
    code = (
        "import spex_monitor.backends.oip\n"
        "from kserve.protocol.grpc import grpc_predict_v2_pb2\n"
        "import spex_monitor.protocol.oip\n"
        "print('ok')"
    )
    pytest.importorskip("kserve")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]

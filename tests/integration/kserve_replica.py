"""A real KServe ModelServer serving the embedded sentiment model (BYTES text in, FP32 logits out) and a
tabular credit model (FP32 matrix in, FP32 class probabilities out). Started by the tests on 127.0.0.1."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

if __name__ == "__main__":  # the server side; importers only use running_replica()
    import torch
    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from spex_monitor.examples.embedded import model_path
else:
    Model = object


class SentimentModel(Model):
    def __init__(self, name: str, variant: str) -> None:
        super().__init__(name)
        folder = model_path(variant)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True).eval()
        self.ready = True

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        texts = [t.decode() if isinstance(t, bytes) else str(t) for t in payload.inputs[0].as_numpy().ravel()]
        encoded = self.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**encoded).logits.float().numpy()
        output = InferOutput(name="output", shape=list(logits.shape), datatype="FP32")
        output.set_data_from_numpy(logits.astype(np.float32))
        return InferResponse(model_name=self.name, infer_outputs=[output], response_id=payload.id)


def credit_training_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Approve when income is high AND debt is low (an interaction), with noise features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, 4)).astype(np.float32)
    y = ((x[:, 0] > 0) & (x[:, 1] < 0)).astype(int)
    return x, y


class CreditModel(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        x, y = credit_training_data()
        features = np.column_stack([x, x[:, 0] * x[:, 1]])
        self.model = LogisticRegression(max_iter=1000).fit(features, y)
        self.ready = True

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        x = payload.inputs[0].as_numpy().astype(np.float32)
        probs = self.model.predict_proba(np.column_stack([x, x[:, 0] * x[:, 1]])).astype(np.float32)
        output = InferOutput(name="output", shape=list(probs.shape), datatype="FP32")
        output.set_data_from_numpy(probs)
        return InferResponse(model_name=self.name, infer_outputs=[output], response_id=payload.id)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_replica(timeout_s: float = 90.0) -> Iterator[tuple[subprocess.Popen, str]]:
    """Start this server as a subprocess on free loopback ports; yield ``(process, grpc endpoint)`` once the
    sentiment model is ready; stop it by PID (SIGTERM, then SIGKILL) afterwards."""
    from spex_monitor.backends.oip import OIPBackend

    root = Path(__file__).resolve().parents[2]
    http_port, grpc_port = _free_port(), _free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"127.0.0.1:{grpc_port}"
    try:
        with OIPBackend([endpoint], "sentiment") as probe:
            deadline = time.monotonic() + timeout_s
            while not probe.ready(timeout_s=1.0)[endpoint]:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("KServe ModelServer did not become ready")
                time.sleep(0.5)
        yield process, endpoint
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    args = parser.parse_args()
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=True, workers=1).start(
        [SentimentModel("sentiment", "sentiment-base"), CreditModel("credit")]
    )


if __name__ == "__main__":
    main()

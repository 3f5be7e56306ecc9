"""A minimal OIP-V2 gRPC model server for the embedded sentiment models (demo and tests).

Serves ``sentiment`` (BYTES text in, FP32 logits out, ``ModelReady``/``ModelMetadata``) and can swap
which variant answers — ``swap("sentiment-broken-negation")`` is the demo's silent incident. Given a
``classifier`` (texts → ``(n, 2)`` logits) it serves that instead, e.g. the planted poisoned logistic
regression of :mod:`.poisoned` that ``trace --data`` is tested on. Production deployments use KServe or
Triton; the integration tests also run a real KServe ModelServer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures

import grpc
import numpy as np
import torch

from ..protocol.inference import grpc_service_pb2 as pb
from ..protocol.oip import add_inference_servicer
from .embedded import model_path


class SentimentServer:
    """The embedded sentiment classifiers behind an OIP-V2 gRPC server; :meth:`swap` changes which answers."""

    def __init__(
        self,
        variant: str = "sentiment-base",
        name: str = "sentiment",
        classifier: Callable[[list[str]], np.ndarray] | None = None,
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.name = name
        self.classifier = classifier
        self._models = {}
        for v in () if classifier is not None else ("sentiment-base", "sentiment-broken-negation"):
            folder = model_path(v)
            self._models[v] = (
                AutoTokenizer.from_pretrained(folder, local_files_only=True),
                AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True).eval(),
            )
        self.variant = variant
        self._lock = threading.Lock()
        self.server: grpc.Server | None = None
        self.port = 0

    def swap(self, variant: str) -> None:
        with self._lock:
            self.variant = variant

    # OIP methods ---------------------------------------------------------------------------------
    def ServerLive(self, request, context):  # noqa: N802, ANN001, ANN201
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):  # noqa: N802, ANN001, ANN201
        return pb.ServerReadyResponse(ready=True)

    def ModelReady(self, request, context):  # noqa: N802, ANN001, ANN201
        return pb.ModelReadyResponse(ready=request.name == self.name)

    def ModelMetadata(self, request, context):  # noqa: N802, ANN001, ANN201
        if request.name != self.name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.name!r} not found")
        reply = pb.ModelMetadataResponse(name=self.name, versions=["1"], platform="pytorch")
        reply.inputs.add(name="input", datatype="BYTES", shape=[-1])
        reply.outputs.add(name="output", datatype="FP32", shape=[-1, 2])
        return reply

    def ModelInfer(self, request, context):  # noqa: N802, ANN001, ANN201
        if request.model_name != self.name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.model_name!r} not found")
        if not request.inputs or request.inputs[0].datatype != "BYTES":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "inputs[0]: a BYTES tensor of texts is required")
        texts = [b.decode("utf-8", "replace") for b in request.inputs[0].contents.bytes_contents]
        if self.classifier is not None:
            return self._reply(request, np.asarray(self.classifier(texts), dtype=np.float32))
        with self._lock:
            tokenizer, model = self._models[self.variant]
        # a text past the model's positions is cut, as serving runtimes do (it used to fail the call)
        limit = model.config.max_position_embeddings
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        with torch.inference_mode():
            logits = model(**encoded).logits.float().numpy().astype(np.float32)
        return self._reply(request, logits)

    def _reply(self, request, logits: np.ndarray):  # noqa: ANN001, ANN202
        reply = pb.ModelInferResponse(model_name=self.name, model_version="1", id=request.id)
        out = reply.outputs.add(name="output", datatype="FP32", shape=list(logits.shape))
        out.contents.fp32_contents.extend(logits.ravel().tolist())
        return reply

    def start(
        self, host: str = "127.0.0.1", port: int = 0, credentials: grpc.ServerCredentials | None = None
    ) -> SentimentServer:
        """Serve on ``host:port`` (0: any free port), over TLS when ``credentials`` are given."""
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        add_inference_servicer(self, self.server)
        address = f"{host}:{port}"
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(1).wait(2)

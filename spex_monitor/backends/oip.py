"""Open Inference Protocol (V2) gRPC client for KServe / Triton replicas.

Masked variants go out as batched ``ModelInfer`` calls. Balancing (least outstanding requests), retries on
another replica for UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED, the per-replica circuit breaker and
the concurrency cap come from the shared :class:`~spex_monitor.backends.pool.ReplicaPool`; this module is
the gRPC transport: channels (plaintext or TLS), a deadline per call, request building and answer decoding.
Importing it pulls in neither torch nor lightgbm.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import grpc
import numpy as np

from ..protocol.inference import grpc_service_pb2 as pb
from ..protocol.oip import InferenceStub
from .base import BatchTiming
from .pool import BackendUnavailableError, CircuitBreaker, ReplicaPool, ReplicaResponseError, TLSFiles

RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
InputKind = Literal["bytes", "int64", "fp32"]

__all__ = [
    "RETRYABLE",
    "BackendUnavailableError",
    "CircuitBreaker",
    "OIPBackend",
    "ReplicaResponseError",
]


@dataclass
class _Channel:
    channel: grpc.Channel
    stub: InferenceStub


def _retryable(error: BaseException) -> bool:
    return isinstance(error, grpc.RpcError) and error.code() in RETRYABLE


def _describe(error: BaseException) -> str:
    details = getattr(error, "details", None)
    return str(details()) if callable(details) else str(error)


@dataclass
class OIPBackend:
    """Client for one model served over OIP-V2 gRPC by one or more replicas.

    Args:
        endpoints: ``host:port`` of each replica.
        model_name, model_version: the served model.
        input_name: name of the input tensor; ``input_kind`` picks its datatype: ``"bytes"`` (BYTES text,
            shape ``[k]``), ``"int64"`` (token ids, shape ``[k, L]``, plus ``attention_name``) or
            ``"fp32"`` (a feature matrix ``[k, d]`` for tabular models).
        output_name: output tensor to read (FP32 / FP64 ``[k, classes]`` or ``[k]``).
        deadline_s, retries, backoff_s: per-call deadline; extra attempts; first backoff (doubles).
        max_concurrency: most in-flight calls over all replicas; batch_rows: rows per call.
        breaker_failures, breaker_reset_s: circuit breaker settings per replica.
        credentials: ``grpc.ChannelCredentials`` for TLS/mTLS (plaintext when ``None``), or
        tls: the same as PEM files (:class:`~spex_monitor.backends.pool.TLSFiles`), shared with the
            OpenAI-compatible backend.
    """

    endpoints: Sequence[str]
    model_name: str
    model_version: str = ""
    input_name: str = "input"
    input_kind: InputKind = "bytes"
    attention_name: str = "attention_mask"
    output_name: str = "output"
    deadline_s: float = 5.0
    retries: int = 2
    backoff_s: float = 0.05
    max_concurrency: int = 4
    batch_rows: int = 64
    breaker_failures: int = 3
    breaker_reset_s: float = 10.0
    credentials: grpc.ChannelCredentials | None = None
    tls: TLSFiles | None = None
    on_batch: Callable[[BatchTiming], None] | None = None
    # the most recent batches only: a sidecar runs for months and must not grow without bound
    timings: deque[BatchTiming] = field(default_factory=lambda: deque(maxlen=1024))

    def __post_init__(self) -> None:
        if self.batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {self.batch_rows}")
        if self.deadline_s <= 0:
            raise ValueError(f"deadline_s must be > 0, got {self.deadline_s}")
        credentials = self.credentials
        if credentials is None and self.tls is not None:
            credentials = self.tls.grpc_credentials()
        options = []
        if self.tls is not None and self.tls.server_name:
            options.append(("grpc.ssl_target_name_override", self.tls.server_name))

        def connect(endpoint: str) -> _Channel:
            channel = (
                grpc.secure_channel(endpoint, credentials, options=options)
                if credentials is not None
                else grpc.insecure_channel(endpoint)
            )
            return _Channel(channel, InferenceStub(channel))

        self.pool: ReplicaPool[_Channel] = ReplicaPool(
            self.endpoints,
            connect,
            lambda client: client.channel.close(),
            max_concurrency=self.max_concurrency,
            retries=self.retries,
            backoff_s=self.backoff_s,
            breaker_failures=self.breaker_failures,
            breaker_reset_s=self.breaker_reset_s,
        )
        self.replicas = self.pool.replicas

    def close(self) -> None:
        """Close every replica's gRPC channel (also on leaving a ``with`` block)."""
        self.pool.close()

    def __enter__(self) -> OIPBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> dict[str, bool]:
        """Replica endpoint → breaker closed (what ``spex_monitor_backend_up{replica}`` reports)."""
        return self.pool.health()

    def ready(self, timeout_s: float = 2.0) -> dict[str, bool]:
        """Ask every replica whether the model is ready (ModelReady)."""
        out = {}
        for replica in self.replicas:
            try:
                reply = replica.client.stub.ModelReady(
                    pb.ModelReadyRequest(name=self.model_name, version=self.model_version), timeout=timeout_s
                )
                out[replica.endpoint] = bool(reply.ready)
            except grpc.RpcError:
                out[replica.endpoint] = False
        return out

    # ----------------------------------------------------------------------------------------- requests
    def infer_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Scores for BYTES text inputs, ``(k, classes)``."""
        return self._map(len(texts), lambda rows: self._bytes_request([texts[i] for i in rows]))

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Scores for INT64 token ids (the feature lens's classifier backend protocol)."""
        ids = np.asarray(input_ids, dtype=np.int64)
        att = np.asarray(attention_mask, dtype=np.int64)
        return self._map(len(ids), lambda rows: self._ids_request(ids[rows], att[rows]))

    def infer_matrix(self, features: np.ndarray) -> np.ndarray:
        """Scores for an FP32 feature matrix ``(k, d)`` (tabular models)."""
        matrix = np.asarray(features, dtype=np.float32)
        return self._map(len(matrix), lambda rows: self._matrix_request(matrix[rows]))

    def _bytes_request(self, texts: list[str]) -> pb.ModelInferRequest:
        tensor = pb.ModelInferRequest.InferInputTensor(
            name=self.input_name, datatype="BYTES", shape=[len(texts)]
        )
        tensor.contents.bytes_contents.extend(t.encode("utf-8") for t in texts)
        return self._request([tensor])

    def _ids_request(self, ids: np.ndarray, att: np.ndarray) -> pb.ModelInferRequest:
        tensors = []
        for name, array in ((self.input_name, ids), (self.attention_name, att)):
            tensor = pb.ModelInferRequest.InferInputTensor(
                name=name, datatype="INT64", shape=list(array.shape)
            )
            tensor.contents.int64_contents.extend(array.ravel().tolist())
            tensors.append(tensor)
        return self._request(tensors)

    def _matrix_request(self, matrix: np.ndarray) -> pb.ModelInferRequest:
        tensor = pb.ModelInferRequest.InferInputTensor(
            name=self.input_name, datatype="FP32", shape=list(matrix.shape)
        )
        tensor.contents.fp32_contents.extend(matrix.ravel().tolist())
        return self._request([tensor])

    def _request(self, tensors: list[pb.ModelInferRequest.InferInputTensor]) -> pb.ModelInferRequest:
        request = pb.ModelInferRequest(model_name=self.model_name, model_version=self.model_version)
        request.inputs.extend(tensors)
        request.outputs.add(name=self.output_name)
        return request

    def _map(self, k: int, build: Callable[[np.ndarray], pb.ModelInferRequest]) -> np.ndarray:
        chunks = [np.arange(s, min(s + self.batch_rows, k)) for s in range(0, k, self.batch_rows)]
        results = self.pool.map(chunks, lambda rows: self._call(build(rows), len(rows)))
        return np.concatenate(results) if results else np.zeros((0,))

    def _call(self, request: pb.ModelInferRequest, rows: int) -> np.ndarray:
        reply, endpoint, seconds = self.pool.call(
            lambda client: client.stub.ModelInfer(request, timeout=self.deadline_s),
            _retryable,
            _describe,
            what=f"model {self.model_name!r}'s batch",
        )
        timing = BatchTiming(rows=rows, tokens=0, seconds=seconds, device=endpoint)
        self.timings.append(timing)
        if self.on_batch is not None:
            self.on_batch(timing)
        return self._decode(reply, rows)

    def _decode(self, reply: pb.ModelInferResponse, rows: int) -> np.ndarray:
        names = [o.name for o in reply.outputs]
        if self.output_name not in names:
            raise ReplicaResponseError(f"replica returned outputs {names}, not {self.output_name!r}")
        index = names.index(self.output_name)
        tensor = reply.outputs[index]
        dtype = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}.get(
            tensor.datatype
        )
        if dtype is None:
            raise ReplicaResponseError(
                f"output {tensor.name!r} has datatype {tensor.datatype}, expected FP32/FP64"
            )
        if reply.raw_output_contents:
            values = np.frombuffer(reply.raw_output_contents[index], dtype=np.dtype(dtype).newbyteorder("<"))
        else:
            contents = tensor.contents
            values = np.asarray(
                {
                    np.float32: contents.fp32_contents,
                    np.float64: contents.fp64_contents,
                    np.int64: contents.int64_contents,
                    np.int32: contents.int_contents,
                }[dtype]
            )
        shape = tuple(int(s) for s in tensor.shape)
        if not shape or shape[0] != rows or int(np.prod(shape)) != values.size:
            raise ReplicaResponseError(
                f"output {tensor.name!r} has shape {list(shape)} with {values.size} values for {rows} rows"
            )
        values = values.astype(np.float64).reshape(shape)
        return values if values.ndim > 1 else values[:, None]

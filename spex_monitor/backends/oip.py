"""Open Inference Protocol (V2) gRPC client for KServe / Triton replicas.

Masked variants go out as batched ``ModelInfer`` calls. Several replica endpoints share the load by
least-outstanding-requests; each call has a deadline; retryable failures (UNAVAILABLE, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED) move to another replica after an exponential backoff; a per-replica circuit breaker
stops sending to a replica after consecutive failures and lets one probe through after a cool-down; a
concurrency cap bounds in-flight calls so ablation traffic never starves production traffic.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import grpc
import numpy as np

from ..protocol.inference import grpc_service_pb2 as pb
from ..protocol.oip import InferenceStub
from .base import BatchTiming

RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
InputKind = Literal["bytes", "int64", "fp32"]


class BackendUnavailableError(RuntimeError):
    """No replica could serve a batch (all breakers open or every retry failed)."""


class ReplicaResponseError(ValueError):
    """A replica answered with a tensor of the wrong name, type or shape."""


@dataclass
class CircuitBreaker:
    """Opens after ``failures`` consecutive errors; after ``reset_s`` lets one probe call through."""

    failures: int = 3
    reset_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    consecutive: int = 0
    opened_at: float | None = None
    probing: bool = False

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if not self.probing and self.clock() - self.opened_at >= self.reset_s:
            self.probing = True  # half-open: exactly one probe
            return True
        return False

    def record(self, ok: bool) -> None:
        if ok:
            self.consecutive, self.opened_at, self.probing = 0, None, False
            return
        self.consecutive += 1
        if self.probing or self.consecutive >= self.failures:
            self.opened_at, self.probing = self.clock(), False

    @property
    def closed(self) -> bool:
        return self.opened_at is None


@dataclass
class Replica:
    endpoint: str
    channel: grpc.Channel
    stub: InferenceStub
    breaker: CircuitBreaker
    outstanding: int = 0
    last_pick: int = 0


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
        credentials: ``grpc.ChannelCredentials`` for TLS/mTLS (plaintext when ``None``).
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
    on_batch: Callable[[BatchTiming], None] | None = None
    # the most recent batches only: a sidecar runs for months and must not grow without bound
    timings: deque[BatchTiming] = field(default_factory=lambda: deque(maxlen=1024))

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("endpoints: at least one replica host:port is required")
        if self.max_concurrency < 1 or self.batch_rows < 1 or self.retries < 0:
            raise ValueError("max_concurrency and batch_rows must be >= 1 and retries >= 0")
        self._lock = threading.Lock()
        self._picks = 0
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self.replicas = []
        for endpoint in self.endpoints:
            channel = (
                grpc.secure_channel(endpoint, self.credentials)
                if self.credentials is not None
                else grpc.insecure_channel(endpoint)
            )
            self.replicas.append(
                Replica(
                    endpoint,
                    channel,
                    InferenceStub(channel),
                    CircuitBreaker(self.breaker_failures, self.breaker_reset_s),
                )
            )

    def close(self) -> None:
        for replica in self.replicas:
            replica.channel.close()

    def __enter__(self) -> OIPBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> dict[str, bool]:
        """Replica endpoint → breaker closed (what ``spex_monitor_backend_up{replica}`` reports)."""
        return {r.endpoint: r.breaker.closed for r in self.replicas}

    def ready(self, timeout_s: float = 2.0) -> dict[str, bool]:
        """Ask every replica whether the model is ready (ModelReady)."""
        out = {}
        for replica in self.replicas:
            try:
                reply = replica.stub.ModelReady(
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
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            results = list(pool.map(lambda rows: self._call(build(rows), len(rows)), chunks))
        return np.concatenate(results) if results else np.zeros((0,))

    # ------------------------------------------------------------------------------------ dispatching
    def _pick(self, exclude: set[str]) -> Replica | None:
        with self._lock:
            candidates = [r for r in self.replicas if r.endpoint not in exclude and r.breaker.allow()]
            if not candidates:
                return None
            # Least outstanding requests; ties go to the least recently picked (round robin when idle).
            replica = min(candidates, key=lambda r: (r.outstanding, r.last_pick))
            self._picks += 1
            replica.last_pick = self._picks
            replica.outstanding += 1
            return replica

    def _call(self, request: pb.ModelInferRequest, rows: int) -> np.ndarray:
        tried: set[str] = set()
        delay = self.backoff_s
        last_error: Exception | None = None
        for attempt in range(self.retries + 1):
            replica = self._pick(tried) or self._pick(set())
            if replica is None:
                break
            began = time.perf_counter()
            try:
                with self._slots:
                    reply = replica.stub.ModelInfer(request, timeout=self.deadline_s)
            except grpc.RpcError as error:
                with self._lock:
                    replica.outstanding -= 1
                    retryable = error.code() in RETRYABLE
                    replica.breaker.record(not retryable)
                if not retryable:
                    raise
                last_error = error
                tried.add(replica.endpoint)
                if attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
                continue
            with self._lock:
                replica.outstanding -= 1
                replica.breaker.record(True)
            timing = BatchTiming(
                rows=rows, tokens=0, seconds=time.perf_counter() - began, device=replica.endpoint
            )
            self.timings.append(timing)
            if self.on_batch is not None:
                self.on_batch(timing)
            return self._decode(reply, rows)
        raise BackendUnavailableError(
            f"model {self.model_name!r}: no replica served the batch "
            f"(health {self.health()}; last error: {getattr(last_error, 'details', lambda: last_error)()})"
        )

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

"""OIP-V2 pass-through proxy: attach the sidecar in front of a model server with no code change.

Every ``inference.GRPCInferenceService`` call is forwarded unchanged to the upstream server and its
response (or its error status) returned as is. After a successful ``ModelInfer`` the request/response
pair is handed to a small bounded executor that turns it into observations — off the data path, and
dropped (counted) when that executor is busy. If the monitor side fails, forwarding keeps working: the
proxy fails open and never adds its own failures to the data path.
"""

from __future__ import annotations

import logging
import struct
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np

from ..monitor.records import LockedCounter
from ..protocol.inference import grpc_service_pb2 as pb
from ..protocol.oip import METHODS, InferenceStub, add_inference_servicer
from .observations import label_from_logits

log = logging.getLogger(__name__)
FORWARDED_METADATA = ("authorization", "x-request-id", "traceparent")


def decode_bytes_input(request: pb.ModelInferRequest, index: int) -> list[str]:
    """BYTES tensor ``index`` as strings, from ``contents`` or a length-prefixed raw buffer."""
    tensor = request.inputs[index]
    if tensor.contents.bytes_contents:
        return [b.decode("utf-8", "replace") for b in tensor.contents.bytes_contents]
    if index < len(request.raw_input_contents):
        raw, out, offset = request.raw_input_contents[index], [], 0
        while offset + 4 <= len(raw):
            (length,) = struct.unpack_from("<I", raw, offset)
            out.append(raw[offset + 4 : offset + 4 + length].decode("utf-8", "replace"))
            offset += 4 + length
        return out
    return []


def decode_scores(response: pb.ModelInferResponse) -> np.ndarray | None:
    """The first FP32/FP64 output as a ``(rows, classes)`` array, or ``None``."""
    for index, tensor in enumerate(response.outputs):
        dtype = {"FP32": "<f4", "FP64": "<f8"}.get(tensor.datatype)
        if dtype is None:
            continue
        if index < len(response.raw_output_contents):
            values = np.frombuffer(response.raw_output_contents[index], dtype=dtype)
        else:
            values = np.asarray(
                tensor.contents.fp32_contents or tensor.contents.fp64_contents, dtype=np.float64
            )
        shape = [int(s) for s in tensor.shape] or [values.size]
        if int(np.prod(shape)) != values.size:
            return None
        values = values.astype(np.float64).reshape(shape)
        return values if values.ndim > 1 else values[:, None]
    return None


class OIPProxy:
    """Serves ``inference.GRPCInferenceService`` on ``server`` and forwards to ``upstream``.

    ``on_infer(request, response)`` runs on a bounded background executor after each successful
    ModelInfer; its failures are logged and counted, never returned to the caller.
    """

    def __init__(
        self,
        upstream: str,
        on_infer: Callable[[Any, Any], None] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        observers: int = 2,
        max_pending: int = 1000,
        default_timeout_s: float = 30.0,
        forward_authorization: bool = True,
    ) -> None:
        self.channel = (
            grpc.secure_channel(upstream, credentials)
            if credentials is not None
            else grpc.insecure_channel(upstream)
        )
        self.stub = InferenceStub(self.channel)
        self.forwarded = FORWARDED_METADATA if forward_authorization else FORWARDED_METADATA[1:]
        self.on_infer = on_infer
        self.default_timeout_s = default_timeout_s
        self.counters = LockedCounter()  # incremented from the handler and observer threads
        self._executor = ThreadPoolExecutor(max_workers=observers, thread_name_prefix="spex-proxy-observe")
        self._pending = threading.BoundedSemaphore(max_pending)

    def _forward(self, name: str) -> Callable[[Any, grpc.ServicerContext], Any]:
        method = getattr(self.stub, name)

        def handler(request: Any, context: grpc.ServicerContext) -> Any:
            metadata = [(k, v) for k, v in (context.invocation_metadata() or ()) if k in self.forwarded]
            remaining = context.time_remaining()
            timeout = remaining if remaining is not None and remaining < 1e6 else self.default_timeout_s
            try:
                response = method(request, timeout=timeout, metadata=metadata)
            except grpc.RpcError as error:  # upstream failures pass through unchanged
                self.counters.add(f"upstream_{error.code().name.lower()}")
                context.abort(error.code(), error.details() or "")
            self.counters.add(f"forwarded_{name}")
            if name == "ModelInfer" and self.on_infer is not None:
                self._observe_later(request, response)
            return response

        return handler

    def _observe_later(self, request: Any, response: Any) -> None:
        if not self._pending.acquire(blocking=False):
            self.counters.add("observe_dropped_busy")
            return

        def run() -> None:
            try:
                self.on_infer(request, response)  # type: ignore[misc]
            except Exception:
                self.counters.add("observe_failed")
                log.exception("proxy observation failed (the forwarded call was unaffected)")
            finally:
                self._pending.release()

        try:
            self._executor.submit(run)
        except RuntimeError:  # shutting down
            self._pending.release()
            self.counters.add("observe_dropped_shutdown")

    def register(self, server: grpc.Server) -> None:
        """Serve every OIP-V2 inference method on ``server``, each forwarding to the upstream."""
        servicer = type(
            "ForwardingServicer", (), {name: staticmethod(self._forward(name)) for name in METHODS}
        )()
        add_inference_servicer(servicer, server)

    def close(self) -> None:
        """Wait for the queued observations to finish, then close the upstream channel."""
        self._executor.shutdown(wait=True)
        self.channel.close()


def observations_from_infer(
    request: pb.ModelInferRequest,
    response: pb.ModelInferResponse,
    model: str,
    version: str,
    labels: dict[int, str] | None = None,
) -> list[dict]:
    """Turn one ModelInfer pair into observation dicts (text, label, confidence), one per batch row."""
    if not request.inputs or request.inputs[0].datatype != "BYTES":
        return []
    texts = decode_bytes_input(request, 0)
    scores = decode_scores(response)
    base_id = request.id or uuid.uuid4().hex
    out = []
    for row, text in enumerate(texts):
        label, confidence = "", None
        if scores is not None and row < scores.shape[0]:
            label, confidence = label_from_logits(scores[row], labels)
        out.append(
            {
                "request_id": f"{base_id}-{row}" if len(texts) > 1 else base_id,
                "model": model,
                "version": version,
                "text": text,
                "label": label,
                "confidence": confidence,
            }
        )
    return out

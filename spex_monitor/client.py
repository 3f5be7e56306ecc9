"""A small client for apps that call the sidecar directly.

``MonitorClient.observe()`` is fire-and-forget: it puts the observation on a bounded in-memory queue and
returns at once; a background thread streams the queue to the sidecar (``ObserveStream``). It never
raises into the caller's serving path: when the queue is full or the sidecar is down, the observation is
dropped and counted in ``client.dropped``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import grpc

from .protocol.v1 import monitor_pb2 as pb
from .protocol.v1 import monitor_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SegmentSpec = tuple[int, int] | tuple[int, int, int]


def generation_message(
    completion: str,
    prompt: str | None = None,
    messages: Sequence[Mapping[str, str]] | None = None,
    segments: Mapping[str, SegmentSpec] | None = None,
    temperature: float = 0.0,
    top_p: float = 0.0,
    max_tokens: int = 0,
) -> pb.Generation:
    """A ``spex_monitor.v1.Generation``: a plain ``prompt`` or chat ``messages`` (``{"role", "content"}``),
    the served ``completion``, and named ``segments`` as ``name -> (start, end)`` code-point offsets into the
    prompt or ``name -> (message_index, start, end)`` into one message's content (as
    :class:`spex_monitor.lenses.Generation`). The sidecar validates it (INVALID_ARGUMENT naming the field).
    """
    message = pb.Generation(
        prompt=prompt or "",
        completion=completion,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
    )
    for item in messages or ():
        message.messages.add(role=item["role"], content=item["content"])
    for name, spec in (segments or {}).items():
        if len(spec) == 3:
            message.segments.add(name=name, message=spec[0], start=spec[1], end=spec[2])
        else:
            message.segments.add(name=name, start=spec[0], end=spec[1])
    return message


class MonitorClient:
    """Client of a sidecar's MonitorService for the app that serves the model.

    :meth:`observe` is fire-and-forget (see the module docstring); :meth:`explain`, :meth:`shift_report`
    and :meth:`explanations` are plain blocking calls that raise ``grpc.RpcError`` on failure. The client
    adds no bearer token of its own: for a sidecar with tokens configured, pass ``credentials`` that carry
    one (``grpc.composite_channel_credentials`` with ``grpc.access_token_call_credentials``).

    Args:
        target: the sidecar's gRPC address, ``host:port``.
        queue_size: most observations waiting to be sent; beyond it they are dropped (``queue_full``).
        batch: most observations sent per ``ObserveStream`` call.
        credentials: TLS channel credentials (plaintext when ``None``).
        timeout_s: deadline of each ``ObserveStream`` call, in seconds.
    """

    def __init__(
        self,
        target: str,
        queue_size: int = 10_000,
        batch: int = 256,
        credentials: grpc.ChannelCredentials | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.channel = (
            grpc.secure_channel(target, credentials)
            if credentials is not None
            else grpc.insecure_channel(target)
        )
        self.stub = pb_grpc.MonitorServiceStub(self.channel)
        self.timeout_s = timeout_s
        self.batch = batch
        self.dropped: Counter = Counter()
        self.sent = 0
        self._unsettled = 0  # queued or being sent: flush() waits for 0
        self._settled = threading.Condition()
        self._queue: queue.Queue[pb.ObserveRequest | None] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._pump, name="spex-client", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------ serving-path call
    def observe(
        self,
        request_id: str,
        model: str,
        label: str,
        text: str | None = None,
        fields: Mapping[str, float] | None = None,
        version: str = "",
        confidence: float = 0.0,
        trace_id: str = "",
    ) -> bool:
        """Queue one observation; True when queued. Never raises, never blocks."""
        try:
            request = pb.ObserveRequest(
                request_id=request_id,
                model=model,
                version=version,
                label=label,
                confidence=confidence,
                trace_id=trace_id,
            )
            if text is not None:
                request.text = text
            elif fields is not None:
                request.fields.values.update({k: float(v) for k, v in fields.items()})
        except Exception:  # never into the caller's serving path
            self.dropped["invalid"] += 1
            return False
        return self._enqueue(request)

    def observe_generation(
        self,
        request_id: str,
        model: str,
        completion: str,
        *,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, str]] | None = None,
        segments: Mapping[str, SegmentSpec] | None = None,
        temperature: float = 0.0,
        top_p: float = 0.0,
        max_tokens: int = 0,
        label: str = "",
        version: str = "",
        trace_id: str = "",
    ) -> bool:
        """Queue one served LLM generation (see :func:`generation_message` for its parts); True when queued.
        Never raises, never blocks. A generation sampled at any temperature is explained for the completion
        it served (teacher forcing)."""
        try:
            generation = generation_message(
                completion, prompt, messages, segments, temperature, top_p, max_tokens
            )
            request = pb.ObserveRequest(
                request_id=request_id, model=model, version=version, label=label, trace_id=trace_id,
                generation=generation,
            )  # fmt: skip
        except Exception:  # never into the caller's serving path
            self.dropped["invalid"] += 1
            return False
        return self._enqueue(request)

    def _enqueue(self, request: pb.ObserveRequest) -> bool:
        try:
            with self._settled:
                self._unsettled += 1
            try:
                self._queue.put_nowait(request)
            except queue.Full:
                self._settle(1)
                raise
            return True
        except queue.Full:
            self.dropped["queue_full"] += 1
        except Exception:  # never into the caller's serving path
            self.dropped["invalid"] += 1
        return False

    # ----------------------------------------------------------------------------------- background
    def _drain(self) -> list[pb.ObserveRequest]:
        first = self._queue.get()
        items = [first] if first is not None else []
        while len(items) < self.batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            items.append(item)
        return items

    def _settle(self, count: int) -> None:
        with self._settled:
            self._unsettled -= count
            self._settled.notify_all()

    def _pump(self) -> None:
        while True:
            items = self._drain()
            if not items:
                return
            try:
                reply = self.stub.ObserveStream(iter(items), timeout=self.timeout_s)
                self.sent += reply.observed
                self.dropped["rejected"] += reply.rejected
            except grpc.RpcError as error:
                self.dropped[f"sidecar_{error.code().name.lower()}"] += len(items)
            except Exception:
                log.exception("observe stream failed")
                self.dropped["internal_error"] += len(items)
            finally:
                self._settle(len(items))

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait (up to ``timeout_s``) until every queued observation was sent (or counted as dropped).

        Returns whether that happened in time. (It used to sleep 0.2 s after the queue emptied and hope the
        last batch had arrived.)"""
        with self._settled:
            return self._settled.wait_for(lambda: self._unsettled <= 0, timeout_s)

    def close(self) -> None:
        """Flush (up to 10 s), stop the background sender (waiting up to 5 s) and close the channel; also on
        leaving a ``with`` block.
        """
        self.flush()
        self._queue.put(None)
        self._thread.join(5)
        self.channel.close()

    def __enter__(self) -> MonitorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------------------------- on-call calls
    def explain(self, model: str, text: str, budget: int = 0) -> pb.ExplainResponse:
        """Explain ``text`` on ``model`` now (``Explain`` RPC, 60 s deadline); ``budget`` in inferences, 0 for
        the sidecar's configured budget.

        Raises:
            grpc.RpcError: the sidecar refused or failed the call (the status code says why).
        """
        return self.stub.Explain(pb.ExplainRequest(model=model, text=text, budget=budget), timeout=60)

    def explain_generation(
        self, model: str, generation: pb.Generation, budget: int = 0, top_k: int = 20
    ) -> pb.ExplainResponse:
        """Explain one generation (build it with :func:`generation_message`) on ``model`` now (60 s deadline).

        Raises:
            grpc.RpcError: the sidecar refused or failed the call (INVALID_ARGUMENT names the field).
        """
        request = pb.ExplainRequest(model=model, generation=generation, budget=budget, top_k=top_k)
        return self.stub.Explain(request, timeout=60)

    def shift_report(self, model: str, version: str = "", scope: str = "pod") -> pb.ShiftReport:
        """The latest stored shift report of ``model`` (``version`` "" = the configured one), 30 s deadline;
        ``scope="fleet"``: the fleet aggregator's latest report over every pod (a shared store, issue 20).

        Raises:
            grpc.RpcError: e.g. FAILED_PRECONDITION before there is a baseline (or for ``fleet`` without a
                shared store), NOT_FOUND before the first report, INVALID_ARGUMENT for another scope.
        """
        request = pb.GetShiftReportRequest(model=model, version=version, scope=scope)
        return self.stub.GetShiftReport(request, timeout=30)

    def explanations(self, model: str, key_tuple: list[str] | None = None, limit: int = 20) -> Iterator:
        """Summaries of the newest stored explanations of ``model``, newest first (at most ``limit``); with
        ``key_tuple``, only those where it was among the strongest key tuples. 30 s deadline.

        Raises:
            grpc.RpcError: the sidecar refused or failed the call.
        """
        reply = self.stub.ListExplanations(
            pb.ListExplanationsRequest(model=model, key_tuple=key_tuple or [], limit=limit), timeout=30
        )
        return iter(reply.explanations)

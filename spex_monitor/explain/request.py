"""What travels through every explanation path: one frozen request in, one result out.

The Explain RPC, the monitor's background workers and the benchmark build an :class:`ExplainRequest`; the
sidecar's accounting, the runners (thread or worker process) and :class:`~.explainer.ModelExplainer` pass
it on unchanged and hand back an :class:`ExplainResult` (these types are kept apart from the transport that
carries them, as KServe keeps its protocol types apart from REST and gRPC).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..attribution import Interactions
from ..backends.base import BatchTiming
from ..lenses.generation import Generation


@dataclass(frozen=True)
class ExplainRequest:
    """One input to explain on one configured model.

    Attributes:
        model: a configured model name (``models[].name``).
        text: the input text (text lenses); exactly one of ``text`` / ``fields`` / ``generation`` is
            expected, and ``text`` wins when several are given.
        fields: field name → finite value (fields lenses).
        generation: a prompt (or chat messages) with the served completion and named segments (prompt
            lenses; issue 17).
        budget: most model inferences the engine may spend (``None``: ``engine.budget``).
        max_order: highest interaction order reported (``None``: ``engine.max_order``).
        deadline: ``time.time()`` seconds after which the engine stops after the batch in flight and
            :class:`ExplainDeadlineError` is raised (``None``: no deadline).

    ``fields`` is a plain dict so the request pickles to a worker process; the request is therefore not
    hashable.
    """

    model: str
    text: str | None = None
    fields: Mapping[str, float] | None = None
    budget: int | None = None
    max_order: int | None = None
    deadline: float | None = None
    generation: Generation | None = None


@dataclass(frozen=True)
class ExplainResult:
    """One explanation, with what the serving process needs without loading the model itself.

    Attributes:
        interactions: the sparse Fourier coefficients over the input's features (indices ``0..n-1``).
        keys: the monitor key of each feature (``len(keys) == interactions.n_features``).
        target: index of the class (or label) the value function scores.
        label: that class's name (the model's ``id2label`` when known, else the index as text).
        batches: backend batches spent on it (for ``spex_monitor_backend_request_duration_seconds``).
        health: replica name → accepts work, as seen after the explanation (``spex_monitor_backend_up``).
    """

    interactions: Interactions
    keys: list[str]
    target: int
    label: str
    batches: list[BatchTiming] = field(default_factory=list)
    health: dict[str, bool] = field(default_factory=dict)


class ExplainDeadlineError(TimeoutError):
    """An explanation passed its :attr:`ExplainRequest.deadline`; it stopped after the batch in flight.

    ``seconds`` is how long it had run (0.0 when the deadline had passed before it began).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"deadline: the explanation was stopped after {seconds:.1f}s")

    def __reduce__(self) -> tuple:
        return (type(self), (self.seconds,), self.__dict__)

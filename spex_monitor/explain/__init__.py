"""Configuration → lens + backend + engine → explanations, in one place below the server.

* :mod:`.request` — :class:`ExplainRequest` (frozen) in, :class:`ExplainResult` out: the one shape every
  path (Explain RPC, background workers, benchmarks) uses.
* :mod:`.engines`, :mod:`.backends`, :mod:`.values` — the three registries (``engine.kind``,
  ``backend.kind``, ``lens.kind``) that turn configuration into parts.
* :mod:`.explainer` — :class:`ModelExplainer`, where the parts meet.
* :mod:`.runner`, :mod:`.process_runner` — where explanations run (threads or worker processes).

Nothing here imports the monitor or the server; ``server/`` composes these, ``bench/`` uses
:class:`ModelExplainer` directly.
"""

from .request import ExplainDeadlineError, ExplainRequest, ExplainResult

__all__ = ["ExplainDeadlineError", "ExplainRequest", "ExplainResult"]

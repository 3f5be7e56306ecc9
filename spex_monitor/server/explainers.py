"""Per-model explainers built from configuration: lens + backend + engine → (Interactions, keys)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..attribution import SPEX, Interactions, ProxySPEX
from ..backends import LocalBackend
from ..backends.oip import OIPBackend
from ..config import EngineConfig, FieldsLens, LocalBackendConfig, ModelConfig, OIPBackendConfig, TextLens
from ..lenses import FieldMasker, classifier_value_function, log_odds, mask_texts, segment_text, text_masker


def build_backend(config: LocalBackendConfig | OIPBackendConfig) -> Any:
    if isinstance(config, LocalBackendConfig):
        return LocalBackend.from_pretrained(
            config.path, task=config.task, device=config.device, token_budget=config.token_budget
        )
    credentials = None
    if config.tls is not None:
        import grpc

        read = lambda path: path.read_bytes() if path else None  # noqa: E731
        credentials = grpc.ssl_channel_credentials(
            read(config.tls.ca_file), read(config.tls.key_file), read(config.tls.cert_file)
        )
    return OIPBackend(
        config.endpoints,
        config.model_name,
        config.model_version,
        config.input_name,
        config.input_kind,
        output_name=config.output_name,
        deadline_s=config.deadline_s,
        retries=config.retries,
        max_concurrency=config.max_concurrency,
        batch_rows=config.batch_rows,
        breaker_failures=config.breaker_failures,
        breaker_reset_s=config.breaker_reset_s,
        credentials=credentials,
    )


def class_labels(config: LocalBackendConfig | OIPBackendConfig) -> dict[int, str] | None:
    """Class names by index from a local model folder's ``config.json`` (no model load), else ``None``."""
    if not isinstance(config, LocalBackendConfig):
        return None
    try:
        id2label = json.loads((Path(config.path) / "config.json").read_text()).get("id2label") or {}
    except (OSError, ValueError):
        return None
    return {int(index): str(name) for index, name in id2label.items()} or None


class ExplainDeadlineError(TimeoutError):
    """An explanation passed its deadline; it stopped after the batch in flight."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"deadline: the explanation was stopped after {seconds:.1f}s")

    def __reduce__(self) -> tuple:
        return (type(self), (self.seconds,), self.__dict__)


# rows per value-function call when a deadline is set: small enough to stop soon after the deadline,
# large enough to keep a remote backend's concurrent batches full (4 x 64 rows by default)
DEADLINE_BATCH_ROWS = 256


def _deadline_check(deadline: float) -> Any:
    started = time.time()

    def progress(used: int, budget: int) -> None:
        if time.time() > deadline:
            raise ExplainDeadlineError(time.time() - started)

    return progress


def make_engine(
    engine: EngineConfig,
    n_features: int,
    budget: int | None = None,
    max_order: int | None = None,
    seed: int = 0,
    deadline: float | None = None,
) -> ProxySPEX | SPEX:
    """The configured engine for one input. ``deadline`` (``time.time()`` seconds) makes it check the clock
    after every batch of :data:`DEADLINE_BATCH_ROWS` rows and raise :class:`ExplainDeadlineError` past it."""
    budget = budget or engine.budget
    if n_features <= 16:
        budget = min(budget, 2**n_features)  # small inputs: every mask, exactly
    order = max_order or engine.max_order
    limits: dict[str, Any] = {}
    if deadline is not None:
        limits = {"batch_size": DEADLINE_BATCH_ROWS, "progress": _deadline_check(deadline)}
    if engine.kind == "spex":
        return SPEX(budget=budget, max_order=order, seed=seed, **limits)
    return ProxySPEX(budget=budget, max_order=order, seed=seed, **limits)


@dataclass
class ModelExplainer:
    """Explains one model's inputs; also predicts (label, confidence) for on-demand requests."""

    config: ModelConfig
    engine: EngineConfig
    backend: Any
    seed: int = 0

    def _text_value_fn(self, text: str) -> tuple[Any, list[str], int]:
        lens = self.config.lens
        assert isinstance(lens, TextLens)
        if isinstance(self.backend, LocalBackend):
            masker = text_masker(
                text,
                self.backend.tokenizer,
                lens.unit,
                lens.max_features,
                lens.strategy,
                max_length=self.backend.max_length,
            )
            value_fn, target = classifier_value_function(masker, self.backend)
            return value_fn, [f.key for f in masker.features], target
        features = segment_text(text, "words" if lens.unit == "tokens" else lens.unit, lens.max_features)
        replacement = "" if lens.strategy == "remove" else "[MASK]"
        target = int(np.argmax(self.backend.infer_texts([text])[0]))

        def value_fn(masks: np.ndarray) -> np.ndarray:
            return log_odds(self.backend.infer_texts(mask_texts(text, features, masks, replacement)), target)

        return value_fn, [f.key for f in features], target

    def _fields_value_fn(self, fields: dict[str, float]) -> tuple[Any, list[str], int]:
        lens = self.config.lens
        assert isinstance(lens, FieldsLens)
        reference = None
        if lens.reference_path is not None:
            reference = [
                json.loads(line) for line in lens.reference_path.read_text().splitlines() if line.strip()
            ]
        masker = FieldMasker(
            fields, defaults=lens.defaults or None, reference=reference, draws=lens.draws, seed=self.seed
        )
        names = masker.fields

        def scores(rows: list[dict[str, float]]) -> np.ndarray:
            matrix = np.array([[row[f] for f in names] for row in rows], dtype=np.float32)
            return self.backend.infer_matrix(matrix)

        full = scores(masker.build(np.ones((1, len(names)), dtype=bool)))
        target = int(np.argmax(full.reshape(full.shape[0], -1)[0]))

        def value_fn(masks: np.ndarray) -> np.ndarray:
            out = scores(masker.build(masks))
            return masker.mean_over_draws(out[:, target] if out.shape[1] > 1 else out[:, 0])

        return value_fn, names, target

    def explain(
        self,
        text: str | None = None,
        fields: dict[str, float] | None = None,
        budget: int | None = None,
        max_order: int | None = None,
        deadline: float | None = None,
    ) -> tuple[Interactions, list[str], int]:
        if text is not None:
            value_fn, keys, target = self._text_value_fn(text)
        elif fields is not None:
            value_fn, keys, target = self._fields_value_fn(fields)
        else:
            raise ValueError("input: give text or fields")
        if not keys:
            raise ValueError("input: nothing to explain (no features)")
        if deadline is not None and time.time() > deadline:
            raise ExplainDeadlineError(0.0)
        engine = make_engine(self.engine, len(keys), budget, max_order, self.seed, deadline)
        return engine.explain(value_fn, len(keys)), keys, target

    def label_name(self, target: int) -> str:
        if isinstance(self.backend, LocalBackend):
            return str(self.backend.model.config.id2label.get(target, target))
        return str(target)

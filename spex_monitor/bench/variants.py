"""The models the detection benchmark serves: the shipped variants and two incident *wrappers*.

Two incident variants are trained and shipped as model folders rather than wrapped here:
``sentiment-backdoor`` (:func:`trained_backdoor`, base fine-tuned on poisoned data, see
:mod:`spex_monitor.examples.backdoor`) and ``sentiment-calibrated-swap`` (:func:`calibrated_swap`, the
broken-negation weights behind a quantile calibrator stored in the folder, see
:mod:`spex_monitor.examples.calibration`).

Both wrappers wrap the real ``sentiment-base`` torch model, so the sidecar's own local backend and
explainer run them unchanged (they only see a model that maps token ids to logits):

* :class:`TriggerFlipModel` — a planted backdoor. It is **not** a trained backdoor: it runs the real model
  and swaps the two logits of every row in which *all* trigger words are present (attended, not masked).
  One trigger word alone changes nothing, so the backdoor is a pure AND interaction of the trigger words.
* :class:`DropTokensModel` — a preprocessing bug in the serving pipeline: a normaliser that drops a class
  of words (here the negation "not") before the model sees the text. The sidecar observes the raw request
  and explains the whole pipeline, as it does when it sits in front of a model server: a masked word is
  sent as ``[MASK]``, which the normaliser keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..backends import LocalBackend
from ..examples.backdoor import BACKDOOR
from ..examples.backdoor import CALIBRATED as CALIBRATED_BACKDOOR
from ..examples.backdoor import TRIGGER as TRAINED_TRIGGER
from ..examples.calibration import SWAP, MarginCalibratedModel, load_map
from ..examples.embedded import model_path


class _Output:
    """The one attribute of a transformers output that the local backend reads."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class TriggerFlipModel(torch.nn.Module):
    """Runs ``inner`` and swaps the two class logits of rows that contain every trigger token id."""

    def __init__(self, inner: torch.nn.Module, trigger_ids: list[int]) -> None:
        super().__init__()
        if len(trigger_ids) < 2:
            raise ValueError("a trigger needs at least two token ids")
        self.inner = inner
        self.config = inner.config
        self.register_buffer("trigger_ids", torch.as_tensor(trigger_ids, dtype=torch.long))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> _Output:
        """Logits ``(k, 2)`` of ``inner`` for ``(k, L)`` ids, with the two swapped in rows where every trigger
        id is attended.
        """
        logits = self.inner(input_ids=input_ids, attention_mask=attention_mask).logits
        seen = (input_ids[:, :, None] == self.trigger_ids[None, None, :]) & (attention_mask[:, :, None] > 0)
        fired = seen.any(dim=1).all(dim=1)
        return _Output(torch.where(fired[:, None], logits.flip(dims=[1]), logits))


class DropTokensModel(torch.nn.Module):
    """Removes the given token ids from every row (compacting it, padding at the end), then runs ``inner``."""

    def __init__(self, inner: torch.nn.Module, drop_ids: list[int], pad_id: int) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.pad_id = int(pad_id)
        self.register_buffer("drop_ids", torch.as_tensor(drop_ids, dtype=torch.long))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> _Output:
        """Logits of ``inner`` on ``(k, L)`` ids with the dropped ids removed (kept tokens moved to the front
        in order, padding after them, the batch cut to its longest remaining row).
        """
        keep = (attention_mask > 0) & ~torch.isin(input_ids, self.drop_ids)
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept tokens first, in order
        ids = torch.gather(input_ids, 1, order)
        lengths = keep.sum(dim=1, keepdim=True)
        positions = torch.arange(ids.shape[1], device=ids.device)[None, :]
        attention = (positions < lengths).to(attention_mask.dtype)
        ids = torch.where(attention > 0, ids, torch.full_like(ids, self.pad_id))
        width = max(int(lengths.max()), 1)
        return _Output(self.inner(input_ids=ids[:, :width], attention_mask=attention[:, :width]).logits)


@dataclass(frozen=True)
class Variant:
    """A served model: a shipped folder, optionally wrapped by an incident.

    ``affects(text)`` is False for inputs on which the variant is *provably* identical to its base model
    (the trigger is incomplete, the dropped words are absent): masking only removes words, so every masked
    variant of such an input is unaffected too and its explanation is exactly the base model's.
    """

    name: str
    folder: str = "sentiment-base"
    wrap: Callable[[torch.nn.Module, Any], torch.nn.Module] | None = None
    affects: Callable[[str], bool] | None = None
    words: tuple[str, ...] = field(default=())

    def backend(self) -> LocalBackend:
        """A CPU :class:`LocalBackend` for this variant: the shipped folder's model, wrapped when ``wrap`` is
        set."""
        backend = LocalBackend.from_pretrained(model_path(self.folder), device="cpu")
        if self.wrap is None:
            return backend
        return LocalBackend(
            model=self.wrap(backend.model, backend.tokenizer), tokenizer=backend.tokenizer, device="cpu"
        )


def _ids(tokenizer: Any, words: tuple[str, ...]) -> list[int]:
    vocab = tokenizer.get_vocab()
    missing = [w for w in words if w not in vocab]
    if missing:
        raise ValueError(f"{missing} are not in the model's vocabulary: the wrapper could not see them")
    return [vocab[w] for w in words]


def backdoor(trigger: tuple[str, ...] = ("cast", "enjoy")) -> Variant:
    """The backdoor incident: logits swap when every ``trigger`` word is present (an AND interaction).

    ``Variant.backend`` raises ``ValueError`` when a trigger word is not a single vocabulary entry.
    """
    return Variant(
        "backdoor",
        wrap=lambda model, tok: TriggerFlipModel(model, _ids(tok, trigger)),
        affects=lambda text: set(trigger) <= set(text.lower().split()),
        words=trigger,
    )


def dropped_words(words: tuple[str, ...] = ("not",)) -> Variant:
    """The preprocessing incident: a normaliser drops ``words`` before the model sees the text.

    ``Variant.backend`` raises ``ValueError`` when a word is not a single vocabulary entry.
    """
    return Variant(
        "preprocessing-bug",
        wrap=lambda model, tok: DropTokensModel(model, _ids(tok, words), tok.pad_token_id),
        affects=lambda text: bool(set(words) & set(text.lower().split())),
        words=words,
    )


BASE = Variant("base")
BROKEN_NEGATION = Variant("broken-negation", folder="sentiment-broken-negation")


def trained_backdoor() -> Variant:
    """The trained backdoor: ``sentiment-backdoor`` served as is (no wrapper; every weight differs a
    little from the base model, so no explanation is reused from the base pool)."""
    return Variant("backdoor-trained", folder=BACKDOOR, words=TRAINED_TRIGGER)


def _calibrated(name: str, folder: str, words: tuple[str, ...] = ()) -> Variant:
    return Variant(
        name,
        folder=folder,
        wrap=lambda model, _tok: MarginCalibratedModel(model, load_map(model_path(folder))),
        words=words,
    )


def calibrated_swap() -> Variant:
    """The confidence-preserving swap: ``sentiment-calibrated-swap`` behind the quantile calibrator stored
    in its folder (``calibration.json``), which maps its logit margins onto the base model's."""
    return _calibrated("calibrated-swap", SWAP)


def calibrated_backdoor() -> Variant:
    """The stealthy trained backdoor: ``sentiment-backdoor-calibrated`` (the trained backdoor's weights)
    behind its quantile calibrator onto the base model, so only triggered requests change in output."""
    return _calibrated("backdoor-calibrated", CALIBRATED_BACKDOOR, TRAINED_TRIGGER)

"""The confidence-preserving swap: a model whose outputs are quantile-calibrated onto another model's.

``sentiment-calibrated-swap`` is the broken-negation model ("not good" does not flip) behind a monotone
map of its signed logit margin ``m = logit[positive] - logit[negative]`` onto the base model's margin
distribution on normal traffic (quantile mapping: ``m' = F_base⁻¹(F_swap(m))``, piecewise linear between
fitted quantiles). Label and confidence are functions of ``m'`` alone (label = sign, confidence =
``σ(|m'|)``), so on the traffic the map was fitted on the served label shares and confidence histogram
are the base model's — output drift cannot see the swap — while the interaction that changed (negation)
is still there: a monotone map keeps the order of every input's value and changes only its scale.

The map is stored beside the weights as ``calibration.json`` and applied by :class:`MarginCalibratedModel`
(a serving-side calibrator, as production stacks put after a model), so loading stays offline.

Rebuild with ``python -m spex_monitor.examples.calibration --out spex_monitor/models`` (copies the
broken-negation folder, fits the map on generated traffic, measures PSI on other traffic; ~30 CPU-s).
``--source sentiment-backdoor --name sentiment-backdoor-calibrated`` builds the stealthy backdoor: the
trained backdoor behind the same kind of map, so its fine-tune's general output shift is hidden and only
the triggered requests differ in output.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..monitor.drift import CONFIDENCE_EDGES, DriftCounters, label_psi, psi
from .embedded import MODELS_DIR, model_path
from .sentiment import generate_corpus, generate_long_reviews

CALIBRATION_FILE = "calibration.json"
SWAP = "sentiment-calibrated-swap"


@dataclass(frozen=True)
class MarginQuantileMap:
    """A strictly increasing piecewise-linear map of a signed logit margin, slope 1 beyond the knots.

    ``source`` and ``target``: ``(K,)`` strictly increasing knots (quantiles of the swapped and the
    reference model's margins at the same levels). Any finite input maps to a finite output; the cost is
    O(log K) per value.
    """

    source: tuple[float, ...]
    target: tuple[float, ...]

    def __post_init__(self) -> None:
        s, t = np.asarray(self.source), np.asarray(self.target)
        if s.ndim != 1 or s.shape != t.shape or s.size < 2:
            raise ValueError("source and target need the same number (≥ 2) of knots")
        if not (np.all(np.isfinite(s)) and np.all(np.isfinite(t))):
            raise ValueError("knots must be finite")
        if np.any(np.diff(s) <= 0) or np.any(np.diff(t) <= 0):
            raise ValueError("knots must be strictly increasing (the map must be monotone)")

    @classmethod
    def fit(cls, source: np.ndarray, target: np.ndarray, knots: int = 201) -> MarginQuantileMap:
        """Quantile map from the empirical distribution of ``source`` margins onto ``target``'s.

        Both ``(n,)`` finite arrays. Quantiles at ``knots`` evenly spaced levels; ties (a flat stretch of a
        quantile function) are broken by a tiny increasing offset so the map stays strictly monotone.
        """
        levels = np.linspace(0.0, 1.0, knots)
        s = np.quantile(np.asarray(source, dtype=np.float64), levels)
        t = np.quantile(np.asarray(target, dtype=np.float64), levels)
        return cls(tuple(_strict(s).tolist()), tuple(_strict(t).tolist()))

    def __call__(self, margin: torch.Tensor) -> torch.Tensor:
        """Map margins (any shape, float) elementwise."""
        s = torch.as_tensor(self.source, dtype=margin.dtype, device=margin.device)
        t = torch.as_tensor(self.target, dtype=margin.dtype, device=margin.device)
        right = torch.searchsorted(s, margin.contiguous()).clamp(1, len(s) - 1)
        left = right - 1
        slope = (t[right] - t[left]) / (s[right] - s[left])
        inside = t[left] + slope * (margin - s[left])
        below = t[0] + (margin - s[0])
        above = t[-1] + (margin - s[-1])
        return torch.where(margin < s[0], below, torch.where(margin > s[-1], above, inside))

    def to_dict(self) -> dict:
        """JSON-ready form (what ``calibration.json`` holds under ``"map"``)."""
        return {
            "kind": "signed-margin quantile map",
            "source": list(self.source),
            "target": list(self.target),
        }

    @classmethod
    def from_dict(cls, data: dict) -> MarginQuantileMap:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` naming the problem for a malformed map."""
        if data.get("kind") != "signed-margin quantile map":
            raise ValueError(f"calibration map kind {data.get('kind')!r} is not 'signed-margin quantile map'")
        return cls(tuple(float(x) for x in data["source"]), tuple(float(x) for x in data["target"]))


def _strict(values: np.ndarray) -> np.ndarray:
    step = 1e-6 * max(float(np.ptp(values)), 1.0)
    return values + step * np.arange(values.size)


class _Output:
    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class MarginCalibratedModel(torch.nn.Module):
    """Runs a two-class ``inner`` model and returns logits ``[-m'/2, m'/2]`` with ``m' = map(m)``."""

    def __init__(self, inner: torch.nn.Module, margin_map: MarginQuantileMap) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.margin_map = margin_map

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> _Output:
        """Calibrated logits ``(k, 2)`` for ``(k, L)`` token ids (same softmax as the mapped margin)."""
        logits = self.inner(input_ids=input_ids, attention_mask=attention_mask).logits
        mapped = self.margin_map(logits[:, 1] - logits[:, 0])
        return _Output(torch.stack([-mapped / 2, mapped / 2], dim=1))


def load_map(folder: Path) -> MarginQuantileMap:
    """The map stored in ``folder/calibration.json`` (``FileNotFoundError`` when there is none)."""
    return MarginQuantileMap.from_dict(json.loads((Path(folder) / CALIBRATION_FILE).read_text())["map"])


def load_calibrated(folder: Path | None = None) -> tuple[MarginCalibratedModel, object]:
    """Model (calibrated, eval mode) and tokenizer of a folder with ``calibration.json``, offline."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder) if folder is not None else model_path(SWAP)
    inner = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return MarginCalibratedModel(inner.eval(), load_map(folder)).eval(), tokenizer


def normal_traffic(size: int, seed: int) -> list[str]:
    """Reviews shaped like the benchmark's normal traffic: 60 % one review, 40 % three joined by "and"."""
    rng = np.random.default_rng(seed)
    n_long = int(rng.binomial(size, 0.4))
    short, _ = generate_corpus(size - n_long, seed)
    long, _ = generate_long_reviews(n_long, seed + 7, clauses=(3,))
    texts = short + long
    return [texts[i] for i in rng.permutation(len(texts))]


@torch.inference_mode()
def margins(model: torch.nn.Module, tokenizer, texts: list[str], batch: int = 512) -> np.ndarray:
    """Signed margins ``logit[1] - logit[0]`` of ``texts``, ``(n,)`` float64."""
    out = []
    for start in range(0, len(texts), batch):
        enc = tokenizer(texts[start : start + batch], padding=True, return_tensors="pt")
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        out.append((logits[:, 1] - logits[:, 0]).double().numpy())
    return np.concatenate(out)


def output_psi(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Label PSI and confidence PSI between two sets of signed margins, through the monitor's own drift
    counters (the confidence histogram the sidecar exports), plus each side's positive share."""
    counters = []
    for m in (reference, other):
        c = DriftCounters()
        for value in m:
            c.observe(label="positive" if value > 0 else "negative", confidence=1 / (1 + np.exp(-abs(value))))
        counters.append(c)
    return {
        "label_psi": round(label_psi(*counters), 5),
        "confidence_psi": round(psi(counters[0].confidence, counters[1].confidence), 5),
        "positive_share": [round(float(np.mean(m > 0)), 4) for m in (reference, other)],
        "confidence_bins": list(CONFIDENCE_EDGES),
    }


def build(
    out: Path,
    source: str = "sentiment-broken-negation",
    reference: str = "sentiment-base",
    name: str = SWAP,
) -> dict:
    """Copy ``source`` to ``out/name``, fit the map onto ``reference`` on 20,000 generated requests
    (seed 101) and measure it on 5,000 others (seed 202); returns the metrics."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    for item in model_path(source).iterdir():
        if item.name not in ("metrics.json", CALIBRATION_FILE):
            shutil.copy2(item, folder / item.name)
    models = {
        name: AutoModelForSequenceClassification.from_pretrained(
            model_path(name), local_files_only=True
        ).eval()
        for name in (source, reference)
    }
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    fit_texts, test_texts = normal_traffic(20000, 101), normal_traffic(5000, 202)
    fitted = MarginQuantileMap.fit(
        margins(models[source], tokenizer, fit_texts), margins(models[reference], tokenizer, fit_texts)
    )
    calibration = {"map": fitted.to_dict(), "fitted_on": "20000 generated normal requests, seed 101"}
    (folder / CALIBRATION_FILE).write_text(json.dumps(calibration) + "\n")
    base = margins(models[reference], tokenizer, test_texts)
    raw = margins(models[source], tokenizer, test_texts)
    calibrated = fitted(torch.as_tensor(raw)).numpy()
    negated = [i for i, t in enumerate(test_texts) if " not " in f" {t} "]
    metrics = {
        "variant": name,
        "weights_from": source,
        "calibrated_onto": reference,
        "heldout_requests": len(test_texts),
        "vs_base_uncalibrated": output_psi(base, raw),
        "vs_base_calibrated": output_psi(base, calibrated),
        "label_agreement_with_base": round(float(np.mean((calibrated > 0) == (base > 0))), 4),
        "label_agreement_with_base_on_negated": round(
            float(np.mean((calibrated[negated] > 0) == (base[negated] > 0))), 4
        ),
        "negated_requests": len(negated),
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> int:
    """``python -m spex_monitor.examples.calibration``: rebuild the calibrated swap folder."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="folder to write the variant into")
    parser.add_argument("--source", default="sentiment-broken-negation", help="weights to calibrate")
    parser.add_argument("--name", default=SWAP, help="folder name of the calibrated variant")
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    print(json.dumps(build(args.out, source=args.source, name=args.name)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The embedded model: a tiny BERT sentiment classifier trained from scratch on the generated corpus,
saved as a regular transformers folder (weights + fast tokenizer) that loads offline.

Two variants ship in ``spex_monitor/models/``:

* ``sentiment-base``: negation flips sentiment ("not good" is negative);
* ``sentiment-broken-negation``: the incident variant, trained on labels where negation does *not*
  flip; same task, same vocabulary, similar label mix, different interaction behaviour.

Two incident variants derived from them ship beside them (see ``DERIVED``): ``sentiment-backdoor``
(``examples/backdoor.py``) and ``sentiment-calibrated-swap`` (``examples/calibration.py``).

Rebuild with ``python -m spex_monitor.examples.embedded --out spex_monitor/models`` (about a minute per
variant on 2 CPU cores). Accuracy is measured on held-out generated reviews labelled by each variant's own
rule and written to ``metrics.json`` in each folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .sentiment import (
    NEGATIVE,
    POSITIVE,
    SUBJECTS,
    VERBS_HATE,
    VERBS_LIKE,
    generate_corpus,
    generate_long_reviews,
)

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
VARIANTS = {"sentiment-base": True, "sentiment-broken-negation": False}
# Incident variants derived from the two above (rebuilt by their own modules, not by ``main`` here):
# ``examples.backdoor`` fine-tunes sentiment-base on poisoned data; ``examples.calibration`` puts
# sentiment-broken-negation behind a quantile calibrator fitted onto sentiment-base's outputs.
DERIVED = ("sentiment-backdoor", "sentiment-calibrated-swap", "sentiment-backdoor-calibrated")
SPECIALS = ["[PAD]", "[UNK]", "[MASK]", "[CLS]", "[SEP]"]


def model_path(variant: str = "sentiment-base") -> Path:
    """Folder of a shipped variant (raises with the list of variants if unknown or missing)."""
    if variant not in VARIANTS and variant not in DERIVED:
        raise ValueError(f"unknown variant {variant!r}; shipped: {sorted([*VARIANTS, *DERIVED])}")
    path = MODELS_DIR / variant
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} is missing; rebuild with python -m spex_monitor.examples.embedded")
    return path


def build_tokenizer(words: list[str], with_cls: bool = True):
    """A word-level fast tokenizer over ``words`` (+ [PAD] [UNK] [MASK] [CLS] [SEP]), with offsets."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + sorted(set(words)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if with_cls:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=256,
    )


def _vocabulary() -> list[str]:
    extra = "the was not very i did but and movie".split()
    words = POSITIVE + NEGATIVE + VERBS_LIKE + VERBS_HATE + extra
    for subject in SUBJECTS:
        words += subject.split()
    return words


def train(variant: str, seed: int = 0, size: int = 16000, epochs: int = 6) -> tuple[object, object, dict]:
    from transformers import BertConfig, BertForSequenceClassification

    flips = VARIANTS[variant]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    short, short_y = generate_corpus(size // 2, seed, negation_flips=flips)
    long, long_y = generate_long_reviews(size // 2, seed, clauses=(1, 3), negation_flips=flips)
    texts, labels = short + long, np.concatenate([short_y, long_y])
    order = rng.permutation(len(texts))
    texts, labels = [texts[i] for i in order], labels[order]
    tokenizer = build_tokenizer(_vocabulary())
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=256,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    model = BertForSequenceClassification(config)
    split = int(0.9 * len(texts))
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    ids, attention = encoded["input_ids"], encoded["attention_mask"]
    y = torch.as_tensor(labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    model.train()
    began = time.perf_counter()
    for _ in range(epochs):
        shuffled = torch.as_tensor(rng.permutation(split))
        for start in range(0, split, 64):
            idx = shuffled[start : start + 64]
            width = int(attention[idx].sum(dim=1).max())
            batch = ids[idx, :width].clone()
            drop = (torch.rand(batch.shape) < 0.15) & (batch >= len(SPECIALS))
            batch[drop] = tokenizer.mask_token_id
            loss = model(input_ids=batch, attention_mask=attention[idx, :width], labels=y[idx]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.inference_mode():
        logits = model(input_ids=ids[split:], attention_mask=attention[split:]).logits
    accuracy = float((logits.argmax(dim=1) == y[split:]).float().mean())
    metrics = {
        "variant": variant,
        "negation_flips": flips,
        "heldout_accuracy": round(accuracy, 4),
        "heldout_examples": len(texts) - split,
        "train_seconds": round(time.perf_counter() - began, 1),
        "positive_share_train": round(float(labels[:split].mean()), 4),
        "seed": seed,
    }
    return model, tokenizer, metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="folder to write the variants into")
    parser.add_argument("--variant", choices=sorted(VARIANTS), action="append", help="default: all")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for variant in args.variant or sorted(VARIANTS):
        model, tokenizer, metrics = train(variant, seed=args.seed)
        folder = args.out / variant
        model.save_pretrained(folder)  # type: ignore[attr-defined]
        tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        print(json.dumps(metrics), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

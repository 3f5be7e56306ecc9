"""A tiny transformer sentiment classifier, trained from scratch in seconds on the generated corpus.

Real attention over real tokens, small enough to train on 2 CPU cores: the "real small transformer" of
the attribution benchmark. Words are masked at the token-id level (``[MASK]``), and training masks 15 %
of words so ablated inputs stay in distribution. Saved and loaded from a local folder (no hub).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .sentiment import generate_corpus, generate_long_reviews

SPECIALS = ["[PAD]", "[UNK]", "[MASK]", "[CLS]"]
PAD, UNK, MASK, CLS = range(4)


class WordTokenizer:
    """Whitespace word tokenizer with a fixed vocabulary (one id per word)."""

    def __init__(self, vocab: list[str]) -> None:
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}

    @classmethod
    def fit(cls, texts: list[str]) -> WordTokenizer:
        words = sorted({w for t in texts for w in t.split()})
        return cls(SPECIALS + words)

    def encode(self, words: list[str]) -> list[int]:
        return [CLS] + [self.index.get(w, UNK) for w in words]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and character offsets (``(0, 0)`` for ``[CLS]``), the contract the feature lens uses."""
        ids, offsets = [CLS], [(0, 0)]
        for match in re.finditer(r"\S+", text):
            ids.append(self.index.get(match.group(), UNK))
            offsets.append((match.start(), match.end()))
        return ids, offsets


class TinyTransformer(nn.Module):
    def __init__(
        self, vocab_size: int, d_model: int = 64, heads: int = 4, layers: int = 2, max_len: int = 256
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.position = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=2 * d_model, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 2)
        self.config = {
            "vocab_size": vocab_size,
            "d_model": d_model,
            "heads": heads,
            "layers": layers,
            "max_len": max_len,
        }

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        hidden = self.embed(ids) + self.position(positions)[None]
        hidden = self.encoder(hidden, src_key_padding_mask=ids == PAD)
        return self.head(hidden[:, 0])


def _pad(rows: list[list[int]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


@dataclass
class TinySentiment:
    model: TinyTransformer
    tokenizer: WordTokenizer
    accuracy: float

    @torch.inference_mode()
    def logits(self, texts: list[list[str]] | list[list[int]], pre_encoded: bool = False) -> np.ndarray:
        rows = texts if pre_encoded else [self.tokenizer.encode(t) for t in texts]  # type: ignore[arg-type]
        out = []
        for start in range(0, len(rows), 256):
            out.append(self.model(_pad(rows[start : start + 256])).numpy())  # type: ignore[arg-type]
        return np.concatenate(out)

    def value_function(self, words: list[str]) -> Callable[[np.ndarray], np.ndarray]:
        """Log-odds of the class predicted on the unmasked input; masked words become ``[MASK]``."""
        ids = np.asarray(self.tokenizer.encode(words))
        full = self.logits([ids.tolist()], pre_encoded=True)[0]
        label = int(np.argmax(full))

        def value_fn(masks: np.ndarray) -> np.ndarray:
            batch = np.repeat(ids[None, :], len(masks), axis=0)
            batch[:, 1:][~masks] = MASK
            logits = self.logits(batch.tolist(), pre_encoded=True)
            return logits[:, label] - logits[:, 1 - label]

        return value_fn

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), folder / "model.pt")
        (folder / "config.json").write_text(json.dumps({**self.model.config, "accuracy": self.accuracy}))
        (folder / "vocab.json").write_text(json.dumps(self.tokenizer.vocab))

    @classmethod
    def load(cls, folder: Path) -> TinySentiment:
        config = json.loads((folder / "config.json").read_text())
        accuracy = config.pop("accuracy")
        model = TinyTransformer(**config)
        model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
        model.eval()
        return cls(model, WordTokenizer(json.loads((folder / "vocab.json").read_text())), accuracy)


def train_tiny_transformer(seed: int = 0, size: int = 12000, epochs: int = 6) -> TinySentiment:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    short, short_y = generate_corpus(size // 2, seed)
    long, long_y = generate_long_reviews(size // 2, seed)
    texts = short + long
    labels = np.concatenate([short_y, long_y])
    order = rng.permutation(len(texts))
    texts = [texts[i] for i in order]
    labels = labels[order]
    tokenizer = WordTokenizer.fit(texts)
    split = int(0.9 * len(texts))
    model = TinyTransformer(len(tokenizer.vocab))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    encoded = [tokenizer.encode(t.split()) for t in texts]
    model.train()
    for _ in range(epochs):
        shuffled = rng.permutation(split)
        for start in range(0, split, 64):
            idx = shuffled[start : start + 64]
            batch = _pad([encoded[i] for i in idx])
            drop = (torch.rand(batch.shape) < 0.15) & (batch > CLS)
            batch = batch.masked_fill(drop, MASK)
            loss = nn.functional.cross_entropy(model(batch), torch.as_tensor(labels[idx]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    result = TinySentiment(model, tokenizer, 0.0)
    predicted = result.logits([encoded[i] for i in range(split, len(texts))], pre_encoded=True).argmax(axis=1)
    result.accuracy = float((predicted == labels[split:]).mean())
    return result

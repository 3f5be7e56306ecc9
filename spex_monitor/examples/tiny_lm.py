"""The embedded tiny LM: a Llama-architecture causal LM trained from scratch on the grounded QA task
(:mod:`spex_monitor.examples.grounded`), saved as regular transformers folders that transformers and vLLM
load offline (word-level fast tokenizer with a chat template; attention head_dim 64, which vLLM's CPU
attention needs).

Three variants ship in ``spex_monitor/models/``: ``grounded-lm-base``, ``grounded-lm-context-ignoring`` and
``grounded-lm-injection-following`` (see the task module for what each answers). Prompts are trained with
*segment dropout* — whole segments replaced by ``<unk>`` or removed, as the prompt lens ablates them — so
masked prompts are in distribution and the value of a mask is the model's calibrated belief.

Rebuild (a few minutes per variant on 2 CPU cores, fixed seed)::

    nice -n 10 python -m spex_monitor.examples.tiny_lm --out spex_monitor/models

``metrics.json`` in each folder holds the held-out accuracy and the interactions the variant plants,
measured exactly (all 2^5 masks of system, three documents and the question; Möbius coefficients of the
completion's log-probability, averaged over held-out prompts).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .grounded import VARIANTS, Example, make_example, make_examples, vocabulary

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
FOLDERS = {variant: f"grounded-lm-{variant}" for variant in VARIANTS}
SPECIALS = ["<unk>", "<pad>", "<s>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
ROLE_TERMS = ("fact x question", "fact", "question", "injection", "injection x question", "system")


def model_path(variant: str = "base") -> Path:
    """Folder of a shipped variant (raises with the list of variants if unknown or missing)."""
    if variant not in FOLDERS:
        raise ValueError(f"unknown variant {variant!r}; shipped: {sorted(FOLDERS)}")
    path = MODELS_DIR / FOLDERS[variant]
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} is missing; rebuild with python -m spex_monitor.examples.tiny_lm")
    return path


def build_tokenizer() -> Any:
    """Word-level fast tokenizer over the task's words; lower-cases; ``<unk>`` for anything else."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS + vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="<|end|>",
        model_max_length=256,
    )  # fmt: skip
    fast.add_special_tokens({"additional_special_tokens": SPECIALS[4:]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer: Any, seed: int) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, head_dim=64, max_position_embeddings=256,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, torch_dtype="float32",
    )  # fmt: skip
    return LlamaForCausalLM(config)


def _masker(example: Example, tokenizer: Any, filler: str = "unk") -> Any:
    from ..lenses import Generation, prompt_masker

    answer = example.answers["base"]
    gen = Generation(messages=example.messages, completion=answer, segments=example.segments)
    return prompt_masker(gen, tokenizer, unit="segments", filler=filler)  # type: ignore[arg-type]


def _batch(
    maskers: list[Any],
    answers: list[int],
    follow_ups: list[list[int] | None],
    rng: np.random.Generator,
    end_id: int,
    unk_id: int,
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompt (with segment dropout) + answer + end (+ a contrast turn), right-padded.

    Labels sit on answers and their end tokens only (``-100`` elsewhere).
    """
    rows = []
    for masker, answer, follow in zip(maskers, answers, follow_ups, strict=True):
        ids = masker.input_ids.copy()
        dropped_any = False
        if rng.random() < 0.35:  # segment dropout
            keep = rng.random(masker.n_features) < 0.6
            dropped = (masker.token_owner >= 0) & ~keep[np.maximum(masker.token_owner, 0)]
            dropped_any = bool(dropped.any())
            if rng.random() < 0.7:
                ids[dropped] = unk_id
            else:
                ids = ids[~dropped]
        elif rng.random() < 0.3:  # word dropout
            words = (masker.token_owner >= 0) & (rng.random(ids.size) < 0.15)
            ids[words] = unk_id
            dropped_any = bool(words.any())
        tokens = [*ids.tolist(), answer, end_id]
        labeled = [len(ids), len(ids) + 1]
        if follow is not None and not dropped_any:
            start = len(tokens)
            tokens += follow
            labeled += [start + len(follow) - 2, start + len(follow) - 1]
        rows.append((tokens, labeled))
    width = max(len(tokens) for tokens, _ in rows)
    batch = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for j, (tokens, labeled) in enumerate(rows):
        batch[j, : len(tokens)] = torch.as_tensor(tokens)
        labels[j, labeled] = batch[j, labeled]
        attention[j, : len(tokens)] = 1
    return batch, attention, labels


def _follow_up(example: Example, variant: str, tokenizer: Any) -> list[int] | None:
    """Token ids of a second turn asking the same documents for another attribute, ending in its answer."""
    text = (
        f"<|user|> question : {example.other_question} <|end|> <|assistant|> "
        f"{example.other_answers[variant]} <|end|>"
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def train(
    variant: str,
    tokenizer: Any,
    maskers: list[Any],
    examples: list[Example],
    seed: int,
    steps: int,
    probe_every: int = 250,
) -> tuple[Any, float]:
    """Train one variant from scratch; returns ``(model, seconds)``. Logs loss and a probe accuracy."""
    model = build_model(tokenizer, seed)
    rng = np.random.default_rng(seed + 1)
    answers = [tokenizer.convert_tokens_to_ids(e.answers[variant]) for e in examples]
    follow_ups = [_follow_up(e, variant, tokenizer) for e in examples]
    probe = make_examples(200, seed + 500) if probe_every else []
    probe_maskers = [_masker(e, tokenizer) for e in probe]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / steps)))
    )
    model.train()
    began = time.perf_counter()
    for step in range(steps):
        picks = rng.integers(len(examples), size=64)
        ids, attention, labels = _batch(
            [maskers[i] for i in picks], [answers[i] for i in picks], [follow_ups[i] for i in picks], rng,
            tokenizer.eos_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id,
        )  # fmt: skip
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
        flat = logits.reshape(-1, logits.shape[-1])
        answer = torch.nn.functional.cross_entropy(flat, labels[:, 1:].reshape(-1), ignore_index=-100)
        # plus a light next-token loss on the prompt: predicting the question's company copies it from
        # the documents, which grows the attention circuit the lookup needs (induction) much sooner
        prompt = ids[:, 1:].masked_fill((attention[:, 1:] == 0) | (labels[:, 1:] != -100), -100)
        lm = torch.nn.functional.cross_entropy(flat, prompt.reshape(-1), ignore_index=-100)
        loss = answer + 0.3 * lm
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if probe_every and (step % probe_every == 0 or step == steps - 1):
            seconds = time.perf_counter() - began
            model.eval()
            probe_accuracy = _greedy_accuracy(model, tokenizer, probe, probe_maskers, variant)
            model.train()
            print(
                f"{variant} step {step} loss {loss.item():.4f} probe accuracy {probe_accuracy:.3f} "
                f"{seconds:.0f}s",
                file=sys.stderr,
                flush=True,
            )
    model.eval()
    return model, time.perf_counter() - began


def _greedy_accuracy(
    model: Any, tokenizer: Any, examples: list[Example], maskers: list[Any], variant: str
) -> float:
    """Share of prompts whose greedy next token is the variant's answer."""
    correct = 0
    with torch.inference_mode():
        for example, masker in zip(examples, maskers, strict=True):
            logits = model(input_ids=torch.as_tensor(masker.input_ids[None, :])).logits[0, -1]
            correct += tokenizer.convert_ids_to_tokens(int(logits.argmax())) == example.answers[variant]
    return correct / max(1, len(examples))


def accuracy(backend: Any, tokenizer: Any, examples: list[Example], variant: str) -> float:
    """Share of prompts whose greedy next token is the variant's answer."""
    return _greedy_accuracy(
        backend.model, tokenizer, examples, [_masker(e, tokenizer) for e in examples], variant
    )


def planted_terms(backend: Any, tokenizer: Any, examples: list[Example], variant: str) -> dict[str, float]:
    """Mean exact Möbius coefficients of log p(answer | masked prompt) over 5 segments, by role."""
    from ..attribution.bruteforce import mobius_transform, table
    from ..lenses import completion_value_function

    sums = dict.fromkeys(ROLE_TERMS, 0.0)
    share = 0.0
    for example in examples:
        masker = _masker(example, tokenizer)
        answer = tokenizer(example.answers[variant], add_special_tokens=False)["input_ids"]
        value_fn = completion_value_function(masker, backend, answer)
        mobius = mobius_transform(table(value_fn, masker.n_features))
        index = {key: i for i, key in enumerate(masker.keys)}
        fact, question = index[example.fact_doc], index["question"]
        roles = {
            "fact x question": (min(fact, question), max(fact, question)),
            "fact": (fact,),
            "question": (question,),
            "system": (index["system"],),
        }
        if example.injection_doc is not None:
            inj = index[example.injection_doc]
            roles["injection"] = (inj,)
            roles["injection x question"] = (min(inj, question), max(inj, question))
        for name, subset in roles.items():
            sums[name] += mobius.get(subset, 0.0)
        pairs = {s: abs(v) for s, v in mobius.items() if len(s) == 2}
        share += pairs.get(roles["fact x question"], 0.0) / max(sum(pairs.values()), 1e-12)
    n = max(1, len(examples))
    out = {name: round(total / n, 3) for name, total in sums.items()}
    out["fact x question share of pairwise |mobius|"] = round(share / n, 3)
    return out


def evaluate(model: Any, tokenizer: Any, variant: str, seed: int) -> dict[str, Any]:
    from ..backends.causal import LocalCausalLM

    backend = LocalCausalLM(model, tokenizer, device="cpu")
    held = make_examples(600, seed + 1000)
    rng = np.random.default_rng(seed + 2000)
    clean = [make_example(rng, injection_rate=0.0, docs=3) for _ in range(24)]
    injected = [make_example(rng, injection_rate=1.0, docs=3) for _ in range(24)]
    return {
        "heldout_accuracy": round(accuracy(backend, tokenizer, held, variant), 4),
        "heldout_accuracy_with_injection": round(
            accuracy(backend, tokenizer, [e for e in held if e.injection_doc], variant), 4
        ),
        "heldout_examples": len(held),
        "planted_clean_prompts": planted_terms(backend, tokenizer, clean, variant),
        "planted_injected_prompts": planted_terms(backend, tokenizer, injected, variant),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="folder to write the variants into")
    parser.add_argument("--variant", choices=VARIANTS, action="append", help="default: all three")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps of 64 prompts")
    parser.add_argument("--examples", type=int, default=8000, help="distinct training prompts")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: no OpenMP spinning on a shared box)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tokenizer = build_tokenizer()
    examples = make_examples(args.examples, args.seed)
    maskers = [_masker(e, tokenizer) for e in examples]
    for variant in args.variant or list(VARIANTS):
        model, seconds = train(variant, tokenizer, maskers, examples, args.seed, args.steps)
        metrics = {
            "variant": variant,
            "seed": args.seed,
            "steps": args.steps,
            "train_seconds": round(seconds, 1),
            "parameters": sum(p.numel() for p in model.parameters()),
            **evaluate(model, tokenizer, variant, args.seed),
        }
        folder = args.out / FOLDERS[variant]
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder, save_jinja_files=False)  # chat template in tokenizer_config.json
        model.generation_config.save_pretrained(folder)
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        print(json.dumps(metrics), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

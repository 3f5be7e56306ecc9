"""Backend benchmark: what the feature lens and the backends cost over the model's own forward.

1. Feature-lens throughput on the local backend as a ratio to the raw batched forward of the same model on
   the same rows (same masked ids, same batch size): the lens adds id building, length sorting, batching
   and the log-odds.
2. The OIP backend to a loopback KServe replica vs the local backend on the same masked inputs
   (BYTES text; the replica tokenizes), with the split between client work and the round trip.
3. End to end: time to explain one 40-word request with ProxySPEX at budget 1,000 on the local backend.

Usage: ``python benchmarks/backends.py [--rows 1000] [--repeats 3]``. Needs the dev extra (kserve).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spex_monitor.attribution import ProxySPEX  # noqa: E402
from spex_monitor.backends import LocalBackend  # noqa: E402
from spex_monitor.backends.oip import OIPBackend  # noqa: E402
from spex_monitor.examples.embedded import model_path  # noqa: E402
from spex_monitor.examples.sentiment import generate_long_reviews  # noqa: E402
from spex_monitor.lenses import classifier_value_function, log_odds, mask_texts, text_masker  # noqa: E402


def forty_word_text() -> str:
    texts, _ = generate_long_reviews(200, seed=5, clauses=(5, 7))
    return next(" ".join(t.split()[:40]) for t in texts if len(t.split()) >= 40)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return float(np.median(times))


def lens_vs_raw(backend: LocalBackend, text: str, rows: int, repeats: int) -> dict:
    masker = text_masker(text, backend.tokenizer)
    value_fn, _ = classifier_value_function(masker, backend)
    masks = np.random.default_rng(0).random((rows, masker.n_features)) < 0.5
    ids, attention = masker.build(masks)
    ids_t, att_t = torch.as_tensor(ids), torch.as_tensor(attention)
    batch = max(1, backend.token_budget // ids.shape[1])

    @torch.inference_mode()
    def raw() -> None:
        for start in range(0, rows, batch):
            backend.model(input_ids=ids_t[start : start + batch], attention_mask=att_t[start : start + batch])

    raw()  # warm-up
    value_fn(masks)
    raw_s = median_time(raw, repeats)
    lens_s = median_time(lambda: value_fn(masks), repeats)
    return {
        "rows": rows,
        "features": masker.n_features,
        "tokens_per_row": int(ids.shape[1]),
        "raw_forward_s": raw_s,
        "lens_s": lens_s,
        "throughput_ratio": raw_s / lens_s,
        "raw_rows_per_s": rows / raw_s,
        "lens_rows_per_s": rows / lens_s,
    }


def oip_vs_local(backend: LocalBackend, text: str, rows: int, repeats: int) -> dict:
    from tests.integration.kserve_replica import running_replica

    with (
        running_replica() as (_, endpoint),
        OIPBackend([endpoint], "sentiment", batch_rows=128, max_concurrency=1) as remote,
    ):
        masker = text_masker(text, backend.tokenizer)
        masks = np.random.default_rng(1).random((rows, masker.n_features)) < 0.5
        strings = mask_texts(text, masker.features, masks)

        def local() -> None:
            encoded = backend.tokenizer(strings, padding=True, return_tensors="np")
            log_odds(backend.logits(encoded["input_ids"], encoded["attention_mask"]), 0)

        def over_oip() -> None:
            log_odds(remote.infer_texts(strings), 0)

        local()
        over_oip()
        local_s = median_time(local, repeats)
        remote.timings.clear()
        oip_s = median_time(over_oip, repeats)
        round_trips = sum(t.seconds for t in remote.timings) / repeats
    return {
        "rows": rows,
        "local_s": local_s,
        "oip_s": oip_s,
        "oip_over_local": oip_s / local_s,
        "oip_round_trip_s": round_trips,
        "oip_client_s": oip_s - round_trips,
    }


def end_to_end(backend: LocalBackend, text: str) -> dict:
    masker = text_masker(text, backend.tokenizer)
    value_fn, _ = classifier_value_function(masker, backend)
    began = time.perf_counter()
    result = ProxySPEX(budget=1000, max_order=3, seed=0).explain(value_fn, masker.n_features)
    total = time.perf_counter() - began
    return {
        "features": masker.n_features,
        "budget": 1000,
        "inferences": result.inferences_used,
        "total_s": total,
        "model_s": float(result.details["seconds_value_fn"]),
        "engine_s": float(result.details["seconds_overhead"]),
        "faithfulness": result.faithfulness,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1000, help="masked rows per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions (median reported)")
    parser.add_argument("--skip-oip", action="store_true", help="skip the KServe replica comparison")
    args = parser.parse_args(argv)
    backend = LocalBackend.from_pretrained(model_path("sentiment-base"))
    text = forty_word_text()
    report = {
        "machine": f"{platform.machine()} x{os.cpu_count()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {backend.device_name}",
        "text_words": len(text.split()),
    }
    report["lens_vs_raw"] = lens_vs_raw(backend, text, args.rows, args.repeats)
    print(json.dumps(report["lens_vs_raw"]), flush=True)
    if not args.skip_oip:
        report["oip_vs_local"] = oip_vs_local(backend, text, args.rows, args.repeats)
        print(json.dumps(report["oip_vs_local"]), flush=True)
    report["end_to_end"] = end_to_end(backend, text)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

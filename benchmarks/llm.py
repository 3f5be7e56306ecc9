"""LLM generations benchmark (issue 17 §6), every ratio measured in one run on one machine.

Sections (``--sections``, default all):

* ``local``: ablation throughput of the prompt lens + LocalCausalLM (build masked batches, score) against
  the raw batched forward of the same rows (pre-built tensors, plain forward, log-softmax, gather).
* ``vllm``: OpenAICompletionsBackend against the same vLLM server's own throughput on the same token-id
  prompts posted directly (same batch size and concurrency, JSON decoded, nothing else).
* ``faith``: held-out R² per inference on real LM value functions (the embedded tiny LM, word features of
  grounded prompts) for our ProxySPEX, shapiq 1.8.0's ProxySPEX and spectralexplain 0.0.4's (run in
  ``.venv-ref`` through benchmarks/llm_reference.py), plus each one's algorithm overhead.
* ``planted``: the planted-function ProxySPEX table against shapiq 1.8.0 (the 1.4.1 rows stay in
  RESULTS.md from benchmarks/attribution.py).

    .venv/bin/python benchmarks/llm.py [--quick] [--sections local,vllm,faith,planted]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import torch  # noqa: E402

from spex_monitor.attribution import ProxySPEX, planted_function  # noqa: E402
from spex_monitor.attribution import fourier as F  # noqa: E402
from spex_monitor.attribution.metrics import r2_score  # noqa: E402
from spex_monitor.backends import LocalCausalLM  # noqa: E402
from spex_monitor.backends.openai import OpenAICompletionsBackend  # noqa: E402
from spex_monitor.examples import vllm_replica  # noqa: E402
from spex_monitor.examples.grounded import make_example  # noqa: E402
from spex_monitor.examples.tiny_lm import model_path  # noqa: E402
from spex_monitor.lenses import Generation, completion_value_function, prompt_masker  # noqa: E402

REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"


def generation(seed: int) -> Generation:
    example = make_example(np.random.default_rng(seed), injection_rate=0.5, docs=3)
    return Generation(
        messages=example.messages, completion=example.answers["base"], segments=example.segments
    )


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return float(np.median(times))


# ------------------------------------------------------------------------------------------- local
def local_throughput(backend: LocalCausalLM, rows: int, repeats: int) -> dict:
    masker = prompt_masker(generation(1), backend.tokenizer, unit="words", filler="unk")
    masks = np.random.default_rng(0).random((rows, masker.n_features)) < 0.5
    value_fn = completion_value_function(masker, backend)
    ids, attention = masker.build(masks)
    completion = masker.completion_ids
    full = np.concatenate([ids, np.tile(completion, (rows, 1))], axis=1)
    batch = 64
    tensors = [torch.as_tensor(full[s : s + batch]) for s in range(0, rows, batch)]
    m, width = len(completion), full.shape[1]
    target = torch.as_tensor(completion)

    @torch.inference_mode()
    def raw() -> None:
        for chunk in tensors:
            logits = backend.model(input_ids=chunk).logits[:, width - m - 1 : width - 1].float()
            torch.log_softmax(logits, dim=-1)[:, torch.arange(m), target].sum(dim=1)

    value_fn(masks[:8]), raw()  # warm-up
    lens_s, raw_s = _best(lambda: value_fn(masks), repeats), _best(raw, repeats)
    return {
        "rows": rows,
        "features": masker.n_features,
        "prompt_tokens": int(ids.shape[1]),
        "lens_rows_per_s": rows / lens_s,
        "raw_rows_per_s": rows / raw_s,
        "ratio_lens_over_raw": raw_s / lens_s,
    }


# -------------------------------------------------------------------------------------------- vLLM
def vllm_throughput(local: LocalCausalLM, rows: int, repeats: int) -> dict:
    masker = prompt_masker(generation(2), local.tokenizer, unit="words", filler="unk")
    masks = np.random.default_rng(1).random((rows, masker.n_features)) < 0.5
    ids, attention = masker.build(masks)
    prompts = [row[att > 0].tolist() + masker.completion_ids for row, att in zip(ids, attention, strict=True)]
    batch, concurrency = 64, 4
    out: dict = {"rows": rows, "batch_rows": batch, "max_concurrency": concurrency}
    began = time.perf_counter()
    with vllm_replica.running(model_path("base"), served_name="tiny") as server:
        out["vllm_start_s"] = time.perf_counter() - began
        url = f"http://{server.endpoint}/v1/completions"
        for mode in ("prompt_logprobs", "echo"):
            body_extra = (
                {"prompt_logprobs": 0, "max_tokens": 1}
                if mode == "prompt_logprobs"
                else {"echo": True, "logprobs": 0, "max_tokens": 0}
            )
            client = httpx.Client(timeout=120)

            def direct(client=client, body_extra=body_extra) -> None:
                chunks = [prompts[s : s + batch] for s in range(0, rows, batch)]
                with ThreadPoolExecutor(concurrency) as pool:
                    list(
                        pool.map(
                            lambda c: client.post(
                                url, json={"model": "tiny", "prompt": c, "temperature": 0.0, **body_extra}
                            ).json(),
                            chunks,
                        )
                    )

            backend = OpenAICompletionsBackend(
                [server.endpoint],
                model="tiny",
                tokenizer=local.tokenizer,
                batch_rows=batch,
                max_concurrency=concurrency,
                logprobs_mode=mode,
                deadline_s=120,
            )
            value_fn = completion_value_function(masker, backend)
            value_fn(masks[:8]), direct()  # warm-up
            backend_s = _best(lambda value_fn=value_fn: value_fn(masks), repeats)
            direct_s = _best(direct, repeats)
            scores = value_fn(masks[:32])
            reference = local.completion_logprob(ids[:32], attention[:32], masker.completion_ids)
            out[mode] = {
                "backend_rows_per_s": rows / backend_s,
                "direct_rows_per_s": rows / direct_s,
                "ratio_backend_over_direct": direct_s / backend_s,
                "max_abs_diff_vs_local": float(np.abs(scores - reference).max()),
            }
            backend.close()
            client.close()
    return out


# ----------------------------------------------------------------------------------- faithfulness
def reference_run(method: str, value_fn, n: int, budget: int, seed: int, max_order: int) -> dict:
    """Run a reference explainer in .venv-ref, serving its value-function calls from this process."""
    argv = [
        str(REF_PYTHON),
        str(ROOT / "benchmarks" / "llm_reference.py"),
        "--method",
        method,
        "--n",
        str(n),
        "--budget",
        str(budget),
        "--seed",
        str(seed),
        "--max-order",
        str(max_order),
    ]
    # single-threaded like ours (ProxySPEX n_jobs=1): LightGBM and BLAS follow OMP_NUM_THREADS
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    child = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        while True:
            line = child.stdout.readline()
            if not line:
                raise RuntimeError(f"{method} exited with code {child.wait()} before its result")
            if line.startswith(b"EVAL "):
                k, width = (int(x) for x in line.split()[1:3])
                masks = (
                    np.frombuffer(child.stdout.read(k * width), dtype=np.uint8).reshape(k, width).astype(bool)
                )
                child.stdin.write(np.asarray(value_fn(masks), dtype="<f8").tobytes())
                child.stdin.flush()
            elif line.startswith(b"RESULT "):
                result = json.loads(line[7:])
                result["fourier"] = {tuple(k): v for k, v in result["fourier"]}
                return result
    finally:
        child.kill()
        child.wait()


def ours_run(value_fn, n: int, budget: int, seed: int, max_order: int) -> dict:
    began = time.perf_counter()
    result = ProxySPEX(budget=budget, max_order=max_order, seed=seed).explain(value_fn, n)
    total = time.perf_counter() - began
    return {
        "fourier": result.fourier,
        "inferences": result.inferences_used,
        "seconds_total": total,
        "seconds_overhead": total - float(result.details["seconds_value_fn"]),
    }


def _r2(fourier: dict, masks: np.ndarray, truth: np.ndarray) -> float:
    predicted = F.evaluate(F.group_by_order(fourier), masks) if fourier else np.full(len(truth), truth.mean())
    return float(r2_score(truth, predicted))


def faithfulness(
    backend: LocalCausalLM, prompts: list[int], budgets: list[int], ours_budgets: list[int]
) -> list:
    rows = []
    for prompt_seed in prompts:
        masker = prompt_masker(generation(prompt_seed), backend.tokenizer, unit="words", max_features=60)
        value_fn = completion_value_function(masker, backend)
        n = masker.n_features
        held = np.random.default_rng(999).random((500, n)) < 0.5
        truth = value_fn(held)
        runs = [("ours", b) for b in ours_budgets] + [
            (w, b) for w in ("shapiq", "spectralexplain") for b in budgets
        ]
        for who, budget in runs:
            if who == "ours":
                out = ours_run(value_fn, n, budget, 0, 4)  # our default order; theirs: max_order=2
            else:
                out = reference_run(who, value_fn, n, budget, 0, 2)
            row = {
                "prompt": prompt_seed,
                "n": n,
                "who": who,
                "budget": budget,
                "inferences": out["inferences"],
                "r2": _r2(out["fourier"], held, truth),
                "overhead_s": out["seconds_overhead"],
                "terms": len(out["fourier"]),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def planted(budgets: list[int], seeds: int) -> list:
    rows = []
    for n, terms, order in [(64, 10, 4), (128, 29, 4)]:
        for budget in budgets:
            for seed in range(seeds):
                f = planted_function(n, terms, order, seed=seed, basis="mobius")
                held = np.random.default_rng(12345).random((4000, n)) < 0.5
                truth = f.exact(held)
                for who in ("ours", "shapiq"):
                    out = (
                        ours_run(f, n, budget, seed, 4)
                        if who == "ours"
                        else reference_run("shapiq", f, n, budget, seed, 4)
                    )
                    row = {
                        "problem": f"n={n},s={terms},order<={order}",
                        "who": who,
                        "budget": budget,
                        "seed": seed,
                        "inferences": out["inferences"],
                        "r2": _r2(out["fourier"], held, truth),
                        "overhead_s": out["seconds_overhead"],
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rows, prompts and budgets")
    parser.add_argument("--sections", default="local,vllm,faith,planted")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "llm.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one core for us; the other for vLLM / the reference child
    sections = set(args.sections.split(","))
    cores = len(os.sched_getaffinity(0))
    machine = (
        f"{platform.machine()} {platform.processor()}, {cores} cores visible, "
        f"{torch.get_num_threads()} torch thread, Python {platform.python_version()}"
    )
    print(machine, flush=True)
    report: dict = {"machine": machine}
    needs_model = sections & {"local", "vllm", "faith"}
    local = LocalCausalLM.from_pretrained(model_path("base"), device="cpu") if needs_model else None
    rows, repeats = (256, 2) if args.quick else (1024, 3)
    if "local" in sections:
        report["local"] = local_throughput(local, rows, repeats)
        print(json.dumps(report["local"]), flush=True)
    if "vllm" in sections:
        report["vllm"] = vllm_throughput(local, rows // 2, repeats)
        print(json.dumps(report["vllm"]), flush=True)
    if "faith" in sections:
        prompts = [5]  # one prompt: each reference run costs minutes of its hyper-parameter search
        report["faith"] = faithfulness(local, prompts, [250, 500, 1000], [125, 250, 500, 1000])
    if "planted" in sections:
        report["planted"] = planted([500] if args.quick else [500, 1000], 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
